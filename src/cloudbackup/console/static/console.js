// cloudbackup console: refresh the parts of a page marked data-live while it is visible, and ask
// before destructive form posts. Every page works without this file; it only saves reloads.
(function () {
  "use strict";

  function refresh(el) {
    var every = parseInt(el.getAttribute("data-every") || "2000", 10);
    var url = el.getAttribute("data-live");
    function schedule() {
      window.setTimeout(tick, every);
    }

    function tick() {
      if (document.hidden) { schedule(); return; }
      fetch(url, { credentials: "same-origin", headers: { "X-Requested-With": "console" } })
        .then(function (response) {
          if (response.status === 401) { window.location.reload(); return null; }
          return response.ok ? response.text() : null;
        })
        .then(function (html) {
          if (html === null) { schedule(); return; }
          var focused = document.activeElement && el.contains(document.activeElement);
          el.innerHTML = html;
          if (focused) { el.focus(); }
          var ended = el.querySelector("[data-final]");
          // A run that just ended: reload once so the page offers the right buttons.
          if (ended && el.hasAttribute("data-reload-when-final")) {
            window.location.reload();
            return;
          }
          if (!ended) { schedule(); }
        })
        .catch(function () { schedule(); });
    }

    schedule();
  }

  function confirmPosts() {
    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.getAttribute("data-confirm"))) { event.preventDefault(); }
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-live]").forEach(function (el) {
      if (!el.hasAttribute("tabindex")) { el.setAttribute("tabindex", "-1"); }
      if (!el.querySelector("[data-final]")) { refresh(el); }  // a finished run does not change
    });
    confirmPosts();
  });
})();
