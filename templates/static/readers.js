// The readers' pages (sign-up, preference centre): a live preview of what the last 7 days would
// have brought for the typed profile, and the time zone from the browser. Loaded from this site
// only (the pages' CSP allows no inline script); without it the forms work as plain HTML.
"use strict";
(function () {
  const live = document.getElementById("live-preview");
  if (!live) { return; }
  const form = live.closest("form");
  const zoneInput = document.getElementById("timezone");
  let zone = "";
  try { zone = Intl.DateTimeFormat().resolvedOptions().timeZone || ""; } catch (e) { zone = ""; }

  if (zoneInput && zone) {
    if (live.dataset.prefillZone === "1") {
      zoneInput.value = zone;  // a new reader: the browser's zone, which they can still change
    } else if (zoneInput.value !== zone) {
      const hint = document.getElementById("zone-browser");  // a saved zone is never overwritten
      const use = document.getElementById("zone-use");
      if (hint && use) {
        use.textContent = "Use " + zone;
        use.addEventListener("click", function () { zoneInput.value = zone; hint.hidden = true; });
        hint.hidden = false;
      }
    }
  }

  function field(name) {
    const checked = form.querySelector("input[name='" + name + "']:checked");
    if (checked) { return checked.value; }
    const el = form.elements.namedItem(name);
    return el && "value" in el ? el.value : "";
  }

  function element(tag, className, text) {
    const el = document.createElement(tag);
    if (className) { el.className = className; }
    if (text) { el.textContent = text; }
    return el;
  }

  function show(data) {
    const parts = [];
    const errors = data.errors || {};
    for (const key of Object.keys(errors)) {
      parts.push(element("p", "error", (key === "exclude" ? "Excludes, " : "Keywords, ") + errors[key]));
    }
    if (data.error) { parts.push(element("p", "error", data.error)); }
    if (data.heading) {
      parts.push(element("h2", "", data.heading));
      const list = element("ol", "papers", "");
      for (const paper of data.papers || []) {
        const li = element("li", "", paper.title);
        if (paper.terms && paper.terms.length) {
          li.appendChild(element("span", "muted", " (" + paper.terms.join(", ") + ")"));
        }
        list.appendChild(li);
      }
      parts.push(list);
    }
    live.replaceChildren(...parts);
    const served = document.getElementById("server-preview");  // the form's own (no-script) preview
    if (served) { served.remove(); }
  }

  let timer = 0;
  let asked = 0;
  async function refresh() {
    const mine = ++asked;
    const body = new URLSearchParams();
    body.set("csrf", live.dataset.token);
    for (const name of ["mode", "keywords", "exclude"]) { body.set(name, field(name)); }
    try {
      const answer = await fetch(live.dataset.url, {method: "POST", body: body, credentials: "same-origin",
                                                    headers: {"Accept": "application/json"}});
      const data = await answer.json();
      if (mine === asked) { show(data); }
    } catch (e) {
      if (mine === asked) { live.replaceChildren(); }
    }
  }
  function soon() { clearTimeout(timer); timer = setTimeout(refresh, 300); }
  form.addEventListener("input", function (event) {
    if (["mode", "keywords", "exclude"].includes(event.target.name)) { soon(); }
  });
  form.addEventListener("change", function (event) {
    if (event.target.name === "mode") { soon(); }
  });
  refresh();
})();
