// Guestbook lab dashboard: the few behaviours htmx does not give for free (copy buttons, live status).
(function () {
  "use strict";
  var live = document.getElementById("live");
  function setLive(state, text) {
    if (!live) return;
    live.classList.remove("connecting", "open", "lost");
    live.classList.add(state);
    live.querySelector(".live-text").textContent = text;
  }
  document.body.addEventListener("htmx:sseOpen", function () { setLive("open", "live"); });
  document.body.addEventListener("htmx:sseError", function () { setLive("lost", "reconnecting…"); });
  document.body.addEventListener("click", function (event) {
    var button = event.target.closest("button.copy");
    if (!button) return;
    var text = button.getAttribute("data-copy") || "";
    var done = function () { button.textContent = "Copied"; setTimeout(function () { button.textContent = "Copy"; }, 1500); };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () {});
    } else {
      var area = document.createElement("textarea");
      area.value = text; document.body.appendChild(area); area.select();
      try { document.execCommand("copy"); done(); } catch (e) { /* leave the text selectable */ }
      document.body.removeChild(area);
    }
  });
})();
// The logs panel is read only while someone looks at it: renew the dashboard's lease while the panel is open.
(function () {
  "use strict";
  var details = document.getElementById("logs-details");
  if (!details) return;
  function ping() {
    if (details.open && !document.hidden) fetch((document.body.dataset.base || "") + "/logs/watch", { credentials: "same-origin" }).catch(function () {});
  }
  ping();
  setInterval(ping, 10000);
  details.addEventListener("toggle", ping);
  document.addEventListener("visibilitychange", ping);
})();
// Live swaps re-render whole panels: keep the <details> a reader opened (kubectl twins, drill notes) open.
(function () {
  "use strict";
  var opened = {};
  function key(details) {
    var owner = details.closest("[id]");
    return owner && details.id !== "logs-details" ? owner.id + ":" + details.className : null;
  }
  document.addEventListener("toggle", function (event) {
    var details = event.target;
    if (details.tagName !== "DETAILS") return;
    var k = key(details);
    if (!k) return;
    if (details.open) opened[k] = true; else delete opened[k];
  }, true);
  function restore() {
    document.querySelectorAll("details").forEach(function (details) {
      var k = key(details);
      if (k && opened[k] && !details.open) details.open = true;
    });
  }
  ["htmx:afterSwap", "htmx:afterSettle", "htmx:sseMessage"].forEach(function (name) {
    document.body.addEventListener(name, restore);
  });
})();
// A read-only look at a lab (the instructor's grid links here with ?look=1): the page sends no request that changes it.
(function () {
  "use strict";
  if (!document.body.dataset.readonly) return;
  document.body.addEventListener("htmx:confirm", function (event) {
    var verb = (event.detail.verb || "get").toLowerCase();
    if (verb !== "get") event.preventDefault();
  });
})();
