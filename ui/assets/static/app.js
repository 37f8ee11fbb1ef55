// ironrack UI: live updates from /events (Server-Sent Events, carried by
// the session cookie), and the machine card on the rack pages. No library.
(function () {
  "use strict";
  var byTier = function () {
    var r = document.querySelector(".racks");
    return r && r.dataset.color === "tier";
  };
  function apply(ms) {
    ms.forEach(function (m) {
      document.querySelectorAll('[data-id="' + m.id + '"]').forEach(function (el) {
        if (el.tagName.toLowerCase() === "rect") {
          if (byTier()) {
            el.setAttribute("fill", m.fill);
          } else {
            el.setAttribute("class", "slot st-" + m.state);
          }
          el.dataset.state = m.state;
          var t = el.querySelector("title");
          if (t) t.textContent = m.title;
        } else if (el.dataset.field === "state") {
          el.textContent = m.state;
          el.className = el.className.replace(/\bst-\S+/, "st-" + m.state);
        }
      });
      var h = document.getElementById("history");
      if (h && h.dataset.machine === m.id) {
        fetch("/machines/" + m.id + "/history", { credentials: "same-origin" })
          .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
          .then(function (html) { h.innerHTML = html; })
          .catch(function () {});
      }
    });
    document.body.dataset.updated = String(Date.now());
  }
  function live() {
    if (!window.EventSource || !document.querySelector("header nav")) return;
    var dot = document.getElementById("live");
    var es = new EventSource("/events");
    es.onopen = function () { if (dot) dot.className = "live on"; document.body.dataset.live = "on"; };
    es.onerror = function () { if (dot) dot.className = "live"; document.body.dataset.live = "off"; };
    es.addEventListener("machines", function (e) { apply(JSON.parse(e.data)); });
    // A stream left open would hold one of the browser's few connections
    // to this host after the page is gone.
    window.addEventListener("pagehide", function () { es.close(); });
  }
  function card() {
    var aside = document.getElementById("card");
    if (!aside) return;
    document.addEventListener("click", function (e) {
      if (e.target.classList && e.target.classList.contains("close")) { aside.hidden = true; return; }
      var el = e.target.closest && e.target.closest("rect.slot");
      if (!el || e.ctrlKey || e.metaKey) return;
      e.preventDefault();
      fetch("/machines/" + el.dataset.id + "/card", { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
        .then(function (html) { aside.innerHTML = html; aside.hidden = false; })
        .catch(function () { location.href = "/machines/" + el.dataset.id; });
    });
  }
  live();
  card();
})();
