"""The console's actions: acting on a message, removing a suppressed address, retrying an
inbound message's webhooks, revoking, issuing and saving a certificate, rotating a
domain's DKIM keys. Each has a page that asks first (a GET: the form with its CSRF
token) and the POST that does it, kept side by side so that the token a form carries is
made for the path its action is routed on. A POST gets here only once
:class:`rail.console.resource.Console` has checked its token; each action is logged with
the admin who did it."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from rail.console import clientpages, inboundpages, issuing, layout, messagepages
from rail.console.csrf import csrf_token
from rail.console.issuing import Issued
from rail.console.requests import LOG_NAMESPACE, MAX_FIELD, SERIAL, Admin, Answer, arg, not_found
from rail.console.sources import ConsoleSources
from rail.dkim.names import a_label
from rail.dkim.rotation import Rotated
from rail.pki.registry import CertificateRecord, RegistryError
from rail.store.adminmodel import RetryTarget
from rail.store.ids import is_message_id
from rail.web.admin import MAX_REASON

__all__ = ["Actions"]

_log = Logger(namespace=LOG_NAMESPACE)


class Actions:
    """The actions on one console's sources."""

    def __init__(self, sources: ConsoleSources) -> None:
        self._sources = sources

    # Asking (GET)

    def confirm_act(self, message_id: str, action: str, admin: Admin) -> Deferred[Answer]:
        if not is_message_id(message_id):
            return not_found()
        target = f"/console/messages/{message_id}/{action}"
        token = csrf_token(self._sources.secret, admin.fingerprint, target)
        return succeed(Answer(page=messagepages.confirm_page(message_id, action, token)))

    def confirm_retry_inbound(self, message_id: str, admin: Admin) -> Deferred[Answer]:
        if not is_message_id(message_id):
            return not_found()
        target = f"/console/inbound/{message_id}/retry"
        token = csrf_token(self._sources.secret, admin.fingerprint, target)
        return succeed(Answer(page=inboundpages.inbound_retry_page(message_id, token)))

    def confirm_revoke(self, serial: str, admin: Admin) -> Deferred[Answer]:
        if not SERIAL.fullmatch(serial) or self._sources.revoke is None:
            return not_found()
        target = f"/console/certificates/{serial}/revoke"
        token = csrf_token(self._sources.secret, admin.fingerprint, target)
        return succeed(Answer(page=clientpages.revoke_page(serial, token)))

    def confirm_remove(self, args: dict[bytes, list[bytes]], admin: Admin) -> Deferred[Answer]:
        client, address = arg(args, "client"), arg(args, "address")
        if not client or not address or max(len(client), len(address)) > MAX_FIELD:
            return not_found()  # what the POST would refuse is not offered
        token = csrf_token(self._sources.secret, admin.fingerprint, "/console/suppressions/remove")
        return succeed(Answer(page=clientpages.remove_page(client, address, token)))

    def confirm_rotate(self, domain: str, admin: Admin) -> Deferred[Answer]:
        if a_label(domain) != domain or self._sources.rotate_dkim is None:
            return not_found()
        target = f"/console/dkim/{domain}/rotate"
        token = csrf_token(self._sources.secret, admin.fingerprint, target)
        return succeed(Answer(page=issuing.rotate_confirm_page(domain, token)))

    # Doing (POST, token checked)

    def act(
        self, message_id: str, action: str, form: dict[bytes, list[bytes]], admin: Admin
    ) -> Deferred[Answer]:
        if not is_message_id(message_id):
            return not_found()
        reason = arg(form, "reason") or None
        problem = None
        if reason is not None and (len(reason) > MAX_REASON or any(ord(c) < 32 for c in reason)):
            problem = f"The reason is at most {MAX_REASON} characters, on one line."
        elif action == "delete" and reason is None:
            problem = "Deleting needs a reason."
        if problem is not None:
            token = csrf_token(
                self._sources.secret,
                admin.fingerprint,
                f"/console/messages/{message_id}/{action}",
            )
            return succeed(
                Answer(400, messagepages.confirm_page(message_id, action, token, problem))
            )
        sources = self._sources
        queue, now, actor = sources.store, sources.clock.seconds(), admin.name
        work: Deferred[Any]
        if action == "retry":
            work = queue.retry(RetryTarget(message_id=message_id), now, actor)
        elif action == "hold":
            work = queue.hold(message_id, now, actor, reason)
        elif action == "release":
            work = queue.release(message_id, now, actor)
        elif action == "delete":
            work = queue.delete(message_id, now, actor, reason or "")
        else:
            work = queue.bounce(message_id, now, actor, reason, sources.dsn)

        def answer(outcome: Any) -> Answer:
            _log.info(
                "admin {client} {action} {msg_id} (console): {outcome}",
                client=actor,
                action=action,
                msg_id=message_id,
                outcome=outcome,
                reason=reason,
            )
            if outcome is None or outcome == "not_found":
                return Answer(404, layout.notice_page("Not found", "No such message."))
            if action == "retry":
                code = "done" if outcome else "none"
            else:
                code = str(outcome)
            query = urlencode({"done": action, "outcome": code})
            return Answer(location=f"/console/messages/{message_id}?{query}")

        return work.addCallback(answer)

    def remove(self, form: dict[bytes, list[bytes]], admin: Admin) -> Deferred[Answer]:
        client, address = arg(form, "client"), arg(form, "address")
        if not client or not address or max(len(client), len(address)) > MAX_FIELD:
            return succeed(
                Answer(400, layout.notice_page("Refused", "A client and an address are needed."))
            )

        def answer(removed: bool) -> Answer:
            _log.info(
                "admin {admin} removed {address} from the suppression list of {client}"
                " (console): {removed}",
                admin=admin.name,
                address=address,
                client=client,
                removed=removed,
            )
            query = urlencode({"client": client, "removed": "1" if removed else "0"})
            return Answer(location=f"/console/clients?{query}#suppressions")

        return self._sources.store.remove_suppression(client, address).addCallback(answer)

    def revoke(self, serial: str, admin: Admin) -> Deferred[Answer]:
        revoke = self._sources.revoke
        if not SERIAL.fullmatch(serial) or revoke is None:
            return not_found()

        def done(records: list[CertificateRecord]) -> Answer:
            _log.info(
                "admin {admin} revoked certificate {serial} ({names}) (console)",
                admin=admin.name,
                serial=serial,
                names=", ".join(r.name for r in records),
            )
            return Answer(location=f"/console/clients?{urlencode({'revoked': serial})}")

        def refused(failure: Failure) -> Answer:
            failure.trap(RegistryError)
            text = str(failure.value)
            return Answer(409, layout.notice_page("Not revoked", text, "/console/clients"))

        return revoke(serial).addCallbacks(done, refused)

    def issue(self, form: dict[bytes, list[bytes]], admin: Admin) -> Deferred[Answer]:
        """A first POST checks the fields and asks for confirmation; a confirmed one
        issues (in a thread) and shows the certificate and key once."""
        sources = self._sources
        settings = sources.issuing
        if settings is None:
            return not_found()
        values = issuing.read_issue_form(form)
        values = attrs.evolve(values, key_type=values.key_type or settings.default_key_type)
        token = csrf_token(sources.secret, admin.fingerprint, "/console/certificates/issue")

        def refused(problems: list[str]) -> Answer:
            page = issuing.issue_page(
                token, values, settings.key_types, settings.default_key_type, problems
            )
            return Answer(400, page)

        problems = settings.check(values)
        if problems:
            return succeed(refused(problems))
        if arg(form, "confirm") != "1":
            days = int(values.days[:9]) if values.days else settings.default_days
            return succeed(Answer(page=issuing.issue_confirm_page(token, values, days)))

        def done(outcome: Issued | list[str]) -> Answer:
            if isinstance(outcome, list):
                return refused(outcome)
            record = outcome.pem.record
            _log.info(
                "admin {admin} issued certificate {serial} for {name} ({role}) (console)",
                admin=admin.name,
                serial=format(record.serial, "x"),
                name=record.name,
                role=record.role,
            )
            download = csrf_token(
                sources.secret, admin.fingerprint, "/console/certificates/download"
            )
            return Answer(page=issuing.issued_page(outcome, download))

        return settings.issue(values).addCallback(done)

    def download(self, form: dict[bytes, list[bytes]]) -> Deferred[Answer]:
        """A certificate or key from the issued page, sent back as a file to save."""
        name, kind = arg(form, "name"), arg(form, "kind")
        values = form.get(b"pem")
        pem = values[-1].decode("ascii", "replace") if values else ""
        problem = issuing.download_problem(name, kind, pem)
        if problem is not None:
            return succeed(Answer(400, layout.notice_page("Refused", problem, "/console/clients")))
        return succeed(Answer(download=(f"{name}.{kind}", pem.encode("ascii"))))

    def rotate(self, domain: str, admin: Admin) -> Deferred[Answer]:
        rotate = self._sources.rotate_dkim
        if rotate is None or a_label(domain) != domain:
            return not_found()

        def done(outcome: Rotated | str) -> Answer:
            if isinstance(outcome, str):
                return Answer(409, layout.notice_page("Not rotated", outcome, "/console/domains"))
            generation = outcome.generation
            _log.info(
                "admin {admin} rotated the DKIM keys of {domain} (console): selectors"
                " {ed25519} and {rsa}",
                admin=admin.name,
                domain=outcome.domain,
                ed25519=generation.ed25519_selector,
                rsa=generation.rsa_selector,
            )
            query = urlencode({"rotated": outcome.domain})
            return Answer(location=f"/console/domains?{query}#main")

        return rotate(domain).addCallback(done)

    def retry_inbound(self, message_id: str, admin: Admin) -> Deferred[Answer]:
        if not is_message_id(message_id):
            return not_found()
        now = self._sources.clock.seconds()

        def answer(count: int) -> Answer:
            _log.info(
                "admin {admin} retried the webhooks of inbound {msg_id} (console):"
                " {count} job(s) due now",
                admin=admin.name,
                msg_id=message_id,
                count=count,
            )
            return Answer(location=f"/console/inbound?retried={count}")

        return self._sources.store.retry_inbound(message_id, now).addCallback(answer)
