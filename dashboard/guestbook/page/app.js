// Guestbook page: add entries (POST, form-encoded), poll the list every second, show server errors in words.
// Entries are only ever rendered with textContent, so no entry can inject HTML or script.
"use strict";

(function () {
  var POLL_MS = 1000;
  var maxLength = parseInt(document.body.getAttribute("data-max-entry-length"), 10) || 500;
  var form = document.getElementById("form");
  var input = document.getElementById("entry");
  var submit = document.getElementById("submit");
  var limit = document.getElementById("limit");
  var errorBox = document.getElementById("error");
  var list = document.getElementById("entries");
  var empty = document.getElementById("empty");
  var statusLine = document.getElementById("status");
  var lastData = null;
  var sending = false;
  var pollTimer = null;

  function chars(text) {
    return Array.from(text).length; // code points, as the server counts them
  }

  function showError(message) {
    if (message) {
      errorBox.textContent = message;
      errorBox.hidden = false;
    } else {
      errorBox.textContent = "";
      errorBox.hidden = true;
    }
  }

  function render(entries) {
    var items = document.createDocumentFragment();
    for (var i = entries.length - 1; i >= 0; i--) {
      var li = document.createElement("li");
      li.textContent = entries[i];
      li.dir = "auto";
      items.appendChild(li);
    }
    list.replaceChildren(items);
    empty.hidden = entries.length > 0;
  }

  function setStatus(text, stale) {
    statusLine.textContent = text;
    statusLine.className = stale ? "status stale" : "status";
  }

  function describe(status, body) {
    if (body && typeof body.error === "string") {
      return body.error + (body.hint ? " " + body.hint : "");
    }
    return "The frontend answered HTTP " + status + " without details.";
  }

  // Resolves to {ok, status, body}; never rejects (network errors become ok=false with a message).
  function request(url, options) {
    return fetch(url, options).then(
      function (resp) {
        return resp.text().then(function (text) {
          var body = null;
          try {
            body = JSON.parse(text);
          } catch (e) {
            body = null;
          }
          return { ok: resp.ok && body !== null, status: resp.status, body: body };
        });
      },
      function () {
        return { ok: false, status: 0, body: { error: "Cannot reach the frontend (network error).", hint: "Is the frontend pod running?" } };
      }
    );
  }

  function apply(body) {
    var entries = Array.isArray(body.entries) ? body.entries : [];
    var key = JSON.stringify(entries);
    if (key !== lastData) {
      lastData = key;
      render(entries);
    }
    var n = entries.length;
    setStatus(n + (n === 1 ? " message" : " messages") + " · updated " + new Date().toLocaleTimeString(), false);
  }

  function poll() {
    clearTimeout(pollTimer);
    request("guestbook.php?cmd=get", { cache: "no-store" }).then(function (r) {
      if (r.ok) {
        apply(r.body);
        if (!sending && errorBox.getAttribute("data-from") === "poll") {
          showError("");
        }
      } else {
        showError(describe(r.status, r.body));
        errorBox.setAttribute("data-from", "poll");
        setStatus("not updated since the error", true);
      }
      pollTimer = setTimeout(poll, document.hidden ? POLL_MS * 5 : POLL_MS);
    });
  }

  function updateCounter() {
    var n = chars(input.value);
    var over = n > maxLength;
    limit.textContent = over
      ? "Too long: " + n + " characters; the limit is " + maxLength + "."
      : n + " / " + maxLength + " characters";
    limit.className = over ? "limit over" : "limit";
    input.className = over ? "over" : "";
    submit.disabled = sending || over;
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var text = input.value;
    if (!text.trim()) {
      showError("The entry is empty. Type some text before adding it.");
      errorBox.setAttribute("data-from", "form");
      return;
    }
    sending = true;
    updateCounter();
    request("guestbook.php?cmd=append", {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded;charset=UTF-8" },
      body: new URLSearchParams({ value: text }).toString()
    }).then(function (r) {
      sending = false;
      if (r.ok) {
        input.value = "";
        showError("");
        apply(r.body);
      } else {
        showError(describe(r.status, r.body));
        errorBox.setAttribute("data-from", "form");
      }
      updateCounter();
      input.focus();
    });
  });

  input.addEventListener("input", updateCounter);
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) {
      poll();
    }
  });
  updateCounter();
  poll();
})();
