"""The console in a real browser: headless Chromium driven by Selenium (chromedriver).

Rail runs in this process on 127.0.0.1 (the service tree ``twistd rail`` builds). The
admin certificate, issued as ``rail certs issue --admin --p12`` does, is imported with
NSS's ``pk12util`` into a throwaway NSS database under a temporary ``HOME``, which is
where Chromium on Linux looks for client certificates; Chromium's
``AutoSelectCertificateForUrls`` policy (a file under /etc/chromium/policies/managed,
removed afterwards) picks it without a dialog. The browser logs in by certificate, finds
a message by recipient, opens its trail, retries it through the confirmation page and
sees the action in the audit log, and removes a suppressed address; an application's
certificate is refused. Every page is saved as a screenshot under
``_trial_temp/console-screenshots/``. Nothing may leave loopback: the host resolver maps
every name but localhost to nothing, and every URL the pages requested (Chromium's
performance log) is checked to be on this server. When axe-core is installed where
``.ci/provision`` puts it, each page is checked for serious or critical accessibility
violations.

The server's certificate is signed by Rail's own CA, whose Ed25519 key browsers do not
verify, so the browser is told to ignore server certificate errors: this test is about
the console, not the server certificate (an ACME certificate is what browsers see in
production).
"""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography.x509 import NameOID
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread

from rail.config import load_config
from rail.pki.bundle import write_bundle
from rail.pki.files import load_ca
from rail.pki.issue import ClientRequest
from rail.pki.operations import issue_client
from rail.pki.registry import Registry, registry_path
from rail.store import suppressions
from rail.store.model import JobResult, RecipientUpdate
from tests.integration.test_queue_cli import _RunningRail
from tests.support.tools import in_ci, missing, need_tool

_POLICIES = Path("/etc/chromium/policies/managed")
_AXE = Path("/opt/rail-ci/axe/node_modules/axe-core/axe.min.js")
_PASSWORD = "console-test-password"
_SCREENSHOTS = Path("console-screenshots")  # relative to trial's working directory


def _webdriver() -> Any:
    try:
        from selenium import webdriver
    except ImportError:
        missing("selenium is not installed (pip install selenium; setup.cfg test extras)")
    return webdriver


class ConsoleBrowserTests(_RunningRail):
    timeout = 480

    def setUp(self) -> None:
        self.chromium = need_tool("chromium", "chromium")
        self.chromedriver = need_tool("chromedriver", "chromium-driver")
        self.pk12util = need_tool("pk12util", "libnss3-tools")
        self.certutil = need_tool("certutil", "libnss3-tools")
        self.webdriver = _webdriver()
        if not os.access(_POLICIES if _POLICIES.exists() else Path("/etc"), os.W_OK):
            missing(f"writing Chromium's policy under {_POLICIES} needs root")
        super().setUp()
        self.store = self.service.getServiceNamed("store").store
        config = load_config(self.config_path)
        self.policy = _POLICIES / f"rail-console-test-{os.getpid()}.json"
        _POLICIES.mkdir(parents=True, exist_ok=True)
        subject = load_ca(config.data_dir).certificate.subject
        ca_cn = subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        # Every Chromium on the machine reads every file here, and of two files setting
        # this policy only one counts: a pattern naming this test's port made a browser of
        # a test running beside it in another process (trial -j2) get no certificate
        # chosen, and hang on its first page. Any port of localhost, and the CA's name
        # (the same for every test), make the files of all such tests alike.
        self.policy.write_text(
            json.dumps(
                {
                    "AutoSelectCertificateForUrls": [
                        json.dumps(
                            {
                                "pattern": "[*.]localhost",
                                "filter": {"ISSUER": {"CN": ca_cn}},
                            }
                        )
                    ]
                }
            )
        )
        self.addCleanup(self.policy.unlink, missing_ok=True)
        self.shots = _SCREENSHOTS.absolute()
        self.shots.mkdir(exist_ok=True)

    def profile(self, name: str, admin: bool) -> Path:
        """A HOME whose NSS database holds a new certificate ``name`` (admin or client),
        imported from its PKCS#12 bundle with pk12util, as an operator would."""
        config = load_config(self.config_path)
        out = self.base / f"certs-{name}"
        out.mkdir()
        emails = () if admin else (f"{name}@rail.test",)
        request = ClientRequest(name, emails, None, "ecdsa-p256", timedelta(days=10), admin=admin)
        issued = issue_client(config, request, out, datetime.now(UTC))
        bundle = write_bundle(
            issued.certificate_path,
            issued.key_path,
            load_ca(config.data_dir).certificate,
            out / f"{name}.p12",
            _PASSWORD.encode(),
        )
        home = self.base / f"home-{name}"
        nssdb = home / ".pki" / "nssdb"
        nssdb.mkdir(parents=True)
        subprocess.run(
            [self.certutil, "-N", "-d", f"sql:{nssdb}", "--empty-password"],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [self.pk12util, "-i", str(bundle), "-d", f"sql:{nssdb}", "-W", _PASSWORD],
            check=True,
            capture_output=True,
        )
        return home

    def browser(self, home: Path) -> Any:
        """Headless Chromium with ``home``'s NSS database, no network but loopback."""
        webdriver = self.webdriver
        options = webdriver.ChromeOptions()
        options.binary_location = self.chromium
        for argument in (
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-default-apps",
            "--ignore-certificate-errors",
            "--window-size=1200,1000",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
            f"--user-data-dir={home / 'chromium'}",
        ):
            options.add_argument(argument)
        options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
        service = webdriver.ChromeService(
            executable_path=self.chromedriver,
            env={**os.environ, "HOME": str(home)},
            log_output=str(self.base / "chromedriver.log"),
        )
        driver = webdriver.Chrome(options=options, service=service)
        # Generous: on a loaded machine the first page (browser start, TLS, certificate
        # selection) has taken over 30 s.
        driver.set_page_load_timeout(120)
        self.addCleanup(driver.quit)
        return driver

    def url(self, path: str) -> str:
        return f"https://localhost:{self.port}{path}"

    def shot(self, driver: Any, name: str) -> None:
        driver.save_screenshot(str(self.shots / f"{name}.png"))

    def accessible(self, driver: Any, page: str) -> None:
        """No serious or critical axe-core violation on the current page (when axe-core
        is installed; under CI=true it must be)."""
        if not _AXE.exists():
            if in_ci():
                missing(f"axe-core is not installed at {_AXE} (.ci/provision)")
            return
        driver.execute_script(_AXE.read_text())
        result = driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            " axe.run(document).then(r => done(r.violations.map("
            " v => [v.id, v.impact, v.nodes.length])));"
        )
        (self.shots / f"{page}-axe.json").write_text(json.dumps(result, indent=1))
        serious = [v for v in result if v[1] in ("serious", "critical")]
        self.assertEqual(serious, [], f"{page}: {serious}")

    def only_loopback(self, driver: Any) -> list[str]:
        """Every URL the browser requested, each checked to be this server's (or one the
        browser answers itself: data:, chrome:, about:)."""
        urls = []
        for entry in driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message.get("method") == "Network.requestWillBeSent":
                urls.append(message["params"]["request"]["url"])
        for url in urls:
            if url.startswith(("data:", "chrome:", "about:")):
                continue  # in the browser: no network request
            parts = urlsplit(url)
            self.assertEqual(
                (parts.scheme, parts.hostname, parts.port), ("https", "localhost", self.port), url
            )
        return urls

    @inlineCallbacks
    def test_operator_session(self) -> Any:
        """Log in by certificate; find a message by recipient; open its trail (the
        deferred attempt shows); retry it through the confirmation page and see the retry
        in the audit log; remove a suppressed address; copy the DNS records; rotate a
        domain's DKIM keys and issue a client certificate through their confirmation
        pages; every page is screenshotted, has no serious accessibility violation,
        fits a phone's width, nothing left loopback and no policy violation was
        logged."""
        message_id = yield self.send("bob@example.com")
        yield self.send("carl@example.org")
        now = float(reactor.seconds())
        yield self.store.record(
            JobResult(
                message_id,
                now,
                (
                    RecipientUpdate(
                        0, "deferred", "451 4.7.1 greylisted", "mx.example.com", now + 600
                    ),
                ),
            )
        )
        yield self.store.add_suppression(
            suppressions.Suppression("app", "gone@example.com", "manual", "api", now)
        )
        home = yield deferToThread(self.profile, "ops", True)
        pages = yield deferToThread(self._operator, home, message_id)
        self.assertEqual(
            sorted(pages),
            [
                "clients",
                "confirm-issue",
                "confirm-remove",
                "confirm-retry",
                "confirm-rotate",
                "domains",
                "inbound",
                "issued",
                "message",
                "overview",
                "retried",
                "rotated",
                "search",
            ],
        )
        detail = yield self.store.show_message(message_id)
        self.assertEqual([(a.actor, a.action) for a in detail.actions], [("ops", "retry")])
        listed = yield self.store.get_suppression("app", "gone@example.com")
        self.assertIsNone(listed)
        config = load_config(self.config_path)
        with Registry.open(registry_path(config.data_dir)) as registry:
            issued = registry.find("shop")
        self.assertEqual([(r.role, r.senders) for r in issued], [("client", ("shop@rail.test",))])

    def _operator(self, home: Path, message_id: str) -> list[str]:
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.expected_conditions import presence_of_element_located
        from selenium.webdriver.support.wait import WebDriverWait

        driver = self.browser(home)
        seen = []

        def go(element: Any) -> None:
            """Click ``element`` and wait until the page it leads to has replaced this one
            and finished loading (a click does not wait for the navigation it starts).

            The old page is told from the new one by a mark set on its window, not by an
            element of it going stale: asked about an element while the document is being
            swapped, chromedriver can answer "Node with given id does not belong to the
            document" instead of a stale reference, which failed a CI run. Errors while the
            navigation is under way are asked again; a page that never comes is a timeout."""
            driver.execute_script("window.railLeaving = true;")
            element.click()
            WebDriverWait(driver, 20, ignored_exceptions=(WebDriverException,)).until(
                lambda d: d.execute_script(
                    "return window.railLeaving === undefined && document.readyState === 'complete';"
                )
            )

        def page(name: str, heading: str) -> None:
            WebDriverWait(driver, 20).until(presence_of_element_located((By.TAG_NAME, "h1")))
            self.assertEqual(driver.find_element(By.TAG_NAME, "h1").text, heading)
            self.shot(driver, name)
            self.accessible(driver, name)
            seen.append(name)

        driver.get(self.url("/console/"))
        page("overview", "Overview")
        self.assertIn("Recipients by status", driver.page_source)
        go(driver.find_element(By.LINK_TEXT, "Messages"))
        driver.find_element(By.ID, "f-recipient").send_keys("bob@example.com")
        go(driver.find_element(By.XPATH, "//button[text()='Search']"))
        page("search", "Messages")
        links = driver.find_elements(By.CSS_SELECTOR, "table a")
        self.assertEqual([link.text for link in links], [message_id])
        go(links[0])
        page("message", f"Message {message_id}")
        self.assertIn("451 4.7.1 greylisted", driver.page_source)
        self.assertIn("mx.example.com", driver.page_source)
        go(driver.find_element(By.LINK_TEXT, "Retry now"))
        page("confirm-retry", "Retry now?")
        go(driver.find_element(By.XPATH, "//button[text()='Confirm: Retry now']"))
        page("retried", f"Message {message_id}")
        self.assertIn("Retried: the pending recipients are due now.", driver.page_source)
        audit = driver.find_element(By.XPATH, "//caption[text()='Operator actions (audit log)']/..")
        self.assertIn("retry", audit.text)
        self.assertIn("ops", audit.text)
        go(driver.find_element(By.LINK_TEXT, "Clients"))
        driver.find_element(By.ID, "s-client").send_keys("app")
        go(driver.find_element(By.XPATH, "//button[text()='Search']"))
        page("clients", "Clients")
        self.assertIn("gone@example.com", driver.page_source)
        go(driver.find_element(By.LINK_TEXT, "Remove"))
        page("confirm-remove", "Remove from the suppression list?")
        go(driver.find_element(By.XPATH, "//button[text()='Confirm: remove']"))
        self.assertIn("Removed from the suppression list.", driver.page_source)
        self.assertNotIn("<td>gone@example.com</td>", driver.page_source)
        go(driver.find_element(By.LINK_TEXT, "Inbound"))
        page("inbound", "Inbound")
        go(driver.find_element(By.LINK_TEXT, "Domains"))
        page("domains", "Domains")
        self.copy_records(driver)
        # Rotate rail.test's DKIM keys: confirmation, then the new selectors and records.
        go(
            driver.find_element(
                By.CSS_SELECTOR, "a[aria-label='Rotate the DKIM keys of rail.test']"
            )
        )
        page("confirm-rotate", "Rotate the DKIM keys?")
        go(driver.find_element(By.XPATH, "//button[text()='Confirm: rotate']"))
        page("rotated", "Domains")
        notice = driver.find_element(By.CSS_SELECTOR, "section.done").text
        self.assertIn("Rotated rail.test: it signs with selectors", notice)
        self.assertIn("._domainkey.rail.test.", notice)
        self.assertEqual(
            driver.find_elements(By.CSS_SELECTOR, "section.done button.copy")[0].get_attribute(
                "aria-label"
            ),
            "Copy the new DKIM records of rail.test",
        )
        # Issue a client certificate: the form, its confirmation, the key shown once.
        go(driver.find_element(By.LINK_TEXT, "Clients"))
        driver.find_element(By.ID, "i-name").send_keys("shop")
        driver.find_element(By.ID, "i-emails").send_keys("shop@rail.test")
        go(driver.find_element(By.XPATH, "//button[text()='Review']"))
        page("confirm-issue", "Issue this certificate?")
        go(driver.find_element(By.XPATH, "//button[text()='Confirm: issue']"))
        page("issued", "Certificate issued: shop")
        blocks = driver.find_elements(By.CSS_SELECTOR, "pre[data-copy]")
        texts = [b.get_property("textContent") for b in blocks]
        self.assertTrue(texts[0].startswith("-----BEGIN CERTIFICATE-----"), texts)
        self.assertTrue(texts[1].startswith("-----BEGIN PRIVATE KEY-----"), texts)
        self.assertEqual(
            [b.text for b in driver.find_elements(By.CSS_SELECTOR, "form button")],
            ["Download shop.crt", "Download shop.key"],
        )
        # A phone's width: no page is wider than the screen (tables scroll in place).
        driver.set_window_size(390, 844)
        for name, path in (
            ("phone-overview", "/console/"),
            ("phone-message", f"/console/messages/{message_id}"),
            ("phone-clients", "/console/clients?client=app"),
        ):
            driver.get(self.url(path))
            self.shot(driver, name)
            width = driver.execute_script(
                "return [document.documentElement.scrollWidth, window.innerWidth]"
            )
            self.assertLessEqual(width[0], width[1], name)
        urls = self.only_loopback(driver)
        self.assertTrue(any(u.endswith("/console/static/console.css") for u in urls), urls)
        self.assertTrue(any(u.endswith("/console/static/console.js") for u in urls), urls)
        self.no_policy_violation(driver)
        return seen

    def copy_records(self, driver: Any) -> None:
        """The script added a labelled Copy button before each records block; pressing
        it puts that block's text on the clipboard (read back with the permission
        granted over the DevTools protocol) and says so on the page."""
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.wait import WebDriverWait

        driver.execute_cdp_cmd(
            "Browser.grantPermissions",
            {
                "origin": self.url(""),
                "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"],
            },
        )
        block = driver.find_element(By.CSS_SELECTOR, "pre[data-copy]")
        button = driver.find_element(By.CSS_SELECTOR, "button.copy")
        self.assertEqual(button.text, "Copy")
        self.assertEqual(button.get_attribute("aria-label"), block.get_attribute("data-copy"))
        self.assertTrue(button.get_attribute("aria-label").startswith("Copy the records of "))
        button.click()
        status = driver.find_element(By.CSS_SELECTOR, ".copy-status")
        WebDriverWait(driver, 20).until(lambda d: status.text)
        self.assertEqual(status.text, "Copied to the clipboard.")
        self.assertEqual(status.get_attribute("role"), "status")
        self.shot(driver, "domains-copied")
        copied = driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            " navigator.clipboard.readText().then(done, e => done('refused: ' + e));"
        )
        self.assertEqual(copied, block.get_property("textContent"))
        self.assertIn("_domainkey", copied)

    def no_policy_violation(self, driver: Any) -> None:
        """Nothing in the browser's console log: no Content-Security-Policy violation
        (a refused inline script or style would be one), no script error (the
        browser's own request for /favicon.ico, which the console does not serve, is
        the one 404 allowed)."""
        entries = driver.get_log("browser")
        problems = [
            e["message"]
            for e in entries
            if e.get("level") in ("SEVERE", "WARNING") and "/favicon.ico " not in e["message"]
        ]
        self.assertEqual(
            [m for m in problems if "Content Security Policy" in m or "Refused" in m], []
        )
        self.assertEqual(problems, [])

    @inlineCallbacks
    def test_client_certificate_refused(self) -> Any:
        """An application's certificate gets the 403 page that says how to get an admin
        certificate, and no console page."""
        home = yield deferToThread(self.profile, "shop", False)
        text = yield deferToThread(self._refused, home)
        self.assertIn("An admin certificate is needed", text)
        self.assertIn("rail certs issue --admin", text)

    def _refused(self, home: Path) -> str:
        from selenium.webdriver.common.by import By

        driver = self.browser(home)
        driver.get(self.url("/console/messages"))
        self.shot(driver, "refused")
        self.accessible(driver, "refused")
        self.only_loopback(driver)
        text: str = driver.find_element(By.TAG_NAME, "body").text
        return text
