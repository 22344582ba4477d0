// The console's only script: copy-to-clipboard buttons. Every page works
// without it; the Content-Security-Policy allows no other script.
"use strict";
document.addEventListener("click", async (event) => {
  const button = event.target.closest("button[data-copy]");
  if (!button) return;
  const source = document.getElementById(button.dataset.copy);
  if (!source) return;
  try {
    await navigator.clipboard.writeText(source.textContent.trim());
    button.textContent = "Copied";
  } catch (e) {
    button.textContent = "Copy failed: select the key and copy it by hand";
  }
});
