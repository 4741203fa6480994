/* Rail console: "Copy" buttons for the DNS records on the Domains page.
 *
 * Progressive enhancement: without this script every record stays selectable text in
 * its <pre>, and the page works as before. Served from the package, same-origin, and
 * loaded with <script src>: nothing inline, so the Content-Security-Policy allows
 * script-src 'self' and no more. Each <pre data-copy="LABEL"> gets a button labelled
 * LABEL (its accessible name) that writes the block's text with the Clipboard API, and
 * a status line that says whether it worked (read out by screen readers).
 */
(function () {
  "use strict";

  function enhance(block) {
    var bar = document.createElement("div");
    var button = document.createElement("button");
    var status = document.createElement("span");
    bar.className = "copy-bar";
    button.type = "button";
    button.className = "copy";
    button.textContent = "Copy";
    button.setAttribute("aria-label", block.getAttribute("data-copy"));
    status.className = "copy-status";
    status.setAttribute("role", "status");
    button.addEventListener("click", function () {
      status.textContent = "";
      navigator.clipboard.writeText(block.textContent).then(
        function () {
          status.textContent = "Copied to the clipboard.";
        },
        function () {
          status.textContent = "Could not copy: select the text and copy it by hand.";
        }
      );
    });
    bar.appendChild(button);
    bar.appendChild(status);
    block.parentNode.insertBefore(bar, block);
  }

  function start() {
    if (!navigator.clipboard || !navigator.clipboard.writeText) {
      return; // an older browser, or not a secure context: the text stays selectable
    }
    var blocks = document.querySelectorAll("pre[data-copy]");
    for (var i = 0; i < blocks.length; i += 1) {
      enhance(blocks[i]);
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
