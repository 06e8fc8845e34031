/* digitsite: "Copy" buttons (data-copy names the element whose text is copied). */
(function () {
  "use strict";
  document.querySelectorAll("[data-copy]").forEach((button) => {
    const source = document.getElementById(button.dataset.copy);
    const said = document.getElementById(button.dataset.copy + "-copied");
    button.addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(source.textContent.trim());
        if (said) said.textContent = "Copied.";
      } catch (error) {
        // No clipboard (an insecure page, a refused permission): select it for the person.
        window.getSelection().selectAllChildren(source);
        if (said) said.textContent = "Selected: press Ctrl+C (or ⌘C) to copy.";
      }
    });
  });
})();
