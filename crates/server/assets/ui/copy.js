// The copy buttons of the web UI: an enhancement. Without this script the secret is a
// read-only field to select and copy by hand.
document.querySelectorAll("button[data-copy]").forEach(function (b) {
  var field = document.getElementById(b.getAttribute("data-copy"));
  if (!field || !navigator.clipboard) return;
  b.hidden = false;
  b.addEventListener("click", function () {
    navigator.clipboard.writeText(field.value).then(function () {
      b.textContent = "Copied";
    });
  });
});
