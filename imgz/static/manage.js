// "My uploads" and album pages: what saves clicks, nothing the pages need to work.
// Select all ticks every checkbox of the grid (again: untick all); Copy link puts an upload's
// viewer link on the clipboard and says "Copied" in a live region for screen readers.
(function () {
  "use strict";
  const status = document.getElementById("copy-status");

  function say(text) {
    if (!status) return;
    status.textContent = "";
    window.setTimeout(function () { status.textContent = text; }, 50);
  }

  async function copy(text) {
    try {
      await navigator.clipboard.writeText(text);
    } catch (err) {  // an insecure origin (http on a LAN address): the old way
      const field = document.createElement("textarea");
      field.value = text;
      field.setAttribute("readonly", "");
      field.style.position = "fixed";
      field.style.opacity = "0";
      document.body.appendChild(field);
      field.select();
      document.execCommand("copy");
      field.remove();
    }
  }

  for (const button of document.querySelectorAll("button.copy[data-link]")) {
    button.hidden = false;
    button.addEventListener("click", async function () {
      await copy(button.dataset.link);
      say("Copied");
    });
  }

  for (const button of document.querySelectorAll("[data-select-all]")) {
    const form = button.closest("form");
    const boxes = function () { return form.querySelectorAll('input[type="checkbox"][name="id"]'); };
    const update = function () {
      const all = Array.from(boxes()).every(function (box) { return box.checked; });
      button.textContent = all ? "Select none" : "Select all";
    };
    button.hidden = false;
    button.addEventListener("click", function () {
      const tick = button.textContent === "Select all";
      for (const box of boxes()) box.checked = tick;
      update();
      say(tick ? "All selected" : "None selected");
    });
    form.addEventListener("change", update);
  }
})();
