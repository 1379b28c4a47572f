// The preview workbench (templates/workbench.html.j2). Every URL is relative: the page lives under
// /<this run's key>/, and its CSP allows scripts from files only.
const ui = { email: null, width: 375, theme: "light", tab: "html", version: "" };
const $ = (id) => document.getElementById(id);

function press(groupSelector, value, attr) {
  document.querySelectorAll(groupSelector).forEach(b => b.setAttribute("aria-pressed", String(b.dataset[attr] === String(value))));
}

async function loadState() {
  const state = await (await fetch("api/state")).json();
  ui.version = state.version;
  document.body.dataset.version = state.version;
  $("title").textContent = (state.title || "Preview") + " — preview";
  $("at").textContent = state.error ? "" : "Issues as a build at " + state.at + " would make them. Nothing is sent.";
  $("errors").textContent = state.error || (state.source_errors || []).join(" · ");
  const list = $("subscribers");
  list.replaceChildren();
  for (const s of state.subscribers) {
    const li = document.createElement("li");
    li.dataset.email = s.email;
    const b = document.createElement("button");
    b.textContent = s.email;
    const meta = document.createElement("span");
    meta.className = "meta";
    meta.textContent = s.subject ? `${s.entries} papers · ${(s.size / 1024).toFixed(1)} KB` : "nothing to send: " + s.reason;
    b.append(meta);
    if (s.subject) {
      const subj = document.createElement("span");
      subj.className = "meta subject";
      subj.textContent = s.subject;
      b.append(subj);
    }
    b.addEventListener("click", () => select(s.email));
    li.append(b);
    list.append(li);
  }
  const emails = state.subscribers.map(s => s.email);
  if (!emails.includes(ui.email)) {
    const first = state.subscribers.find(s => s.subject) || state.subscribers[0];
    ui.email = first ? first.email : null;
  }
  if (ui.email) await select(ui.email); else { $("empty").hidden = false; $("empty").textContent = "No subscribers."; }
}

async function select(email) {
  ui.email = email;
  document.querySelectorAll("#subscribers button").forEach(b =>
    b.setAttribute("aria-current", String(b.parentElement.dataset.email === email)));
  const issue = await (await fetch("api/issue/" + encodeURIComponent(email))).json();
  $("subject").textContent = issue.subject || ("Nothing to send: " + issue.reason);
  $("panel-text").textContent = issue.text || "";
  $("panel-headers").textContent = issue.headers || "";
  $("panel-source").textContent = issue.raw || "";
  const links = $("links");
  links.replaceChildren();
  for (const l of issue.links || []) {
    const li = document.createElement("li");
    const a = document.createElement("a");
    a.href = l.href; a.textContent = l.href; a.target = "_blank"; a.rel = "noopener";
    li.append((l.text || "(no text)") + " → ", a);
    links.append(li);
  }
  const size = issue.size || 0;
  $("meter").value = size;
  $("meter-label").textContent = issue.size == null ? "" : `${(size / 1024).toFixed(1)} KB of 102 KB`;
  $("meter-label").className = size > 104448 ? "over" : "";
  $("empty").hidden = issue.size != null;
  $("empty").textContent = issue.size == null ? "Nothing to send: " + issue.reason : "";
  showFrame(issue.size != null);
}

function showFrame(has) {
  $("frame").src = has ? `email/${encodeURIComponent(ui.email)}?theme=${ui.theme}&v=${ui.version}` : "about:blank";
  $("frame-wrap").style.width = ui.width + "px";
  for (const t of ["html", "text", "headers", "source", "links"]) $("panel-" + t).hidden = t !== ui.tab;
  document.body.dataset.theme = ui.theme;
}

document.querySelectorAll("[data-width]").forEach(b => b.addEventListener("click", () => {
  ui.width = Number(b.dataset.width); press("[data-width]", ui.width, "width"); $("frame-wrap").style.width = ui.width + "px";
}));
document.querySelectorAll("[data-theme]").forEach(b => b.addEventListener("click", () => {
  ui.theme = b.dataset.theme; press("[data-theme]", ui.theme, "theme"); showFrame(!$("empty").textContent);
}));
document.querySelectorAll("[data-tab]").forEach(b => b.addEventListener("click", () => {
  ui.tab = b.dataset.tab; press("[data-tab]", ui.tab, "tab");
  for (const t of ["html", "text", "headers", "source", "links"]) $("panel-" + t).hidden = t !== ui.tab;
}));

async function poll() {
  try {
    const { version } = await (await fetch("api/version")).json();
    if (version !== ui.version) await loadState();
  } catch (e) { /* the server restarts: try again */ }
  setTimeout(poll, 1000);
}
loadState().then(() => setTimeout(poll, 1000));

// "Why not this paper?": each subscriber's reason (newsletter explain), this preview counted as built now.
$("why").addEventListener("submit", async (event) => {
  event.preventDefault();
  const answer = await (await fetch("api/explain?paper=" + encodeURIComponent($("why-paper").value))).json();
  const out = $("why-out");
  out.replaceChildren();
  $("why-paper-name").textContent = answer.error ? answer.error : `${answer.paper.id}: ${answer.paper.title}`;
  for (const r of answer.reasons || []) {
    const li = document.createElement("li");
    li.dataset.email = r.subscriber;
    li.dataset.reason = r.reason;
    const who = document.createElement("strong");
    who.textContent = r.subscriber;
    li.append(who, document.createTextNode(": " + r.sentence));
    out.append(li);
  }
});
