"""The service's web page at ``/``: pick a video (from the media roots, a URL or an upload), ask,
and watch the run drawn as it goes with the run report's own pieces (:mod:`mcr.outputs.run_view`):
the page follows the run's events (``GET /v1/runs/ID/events``) and, as each comes, puts in the run
drawn so far (``GET /v1/runs/ID/view``), so a run looks the same live and in its report. Plain HTML
and a little JavaScript, served by the package: no build step, nothing from a CDN. A token given as
``/#token=...`` is sent with every request."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from mcr.outputs.run_view import CSS, SCRIPT

router = APIRouter(tags=["page"])

EVENTS = ["run_started", "model_called", "tool_called", "tool_returned", "answer_proposed", "verification",
          "phase", "memory_written", "index_stage", "run_finished"]  # fmt: skip

PAGE_CSS = """
body{max-width:1100px}
.top{display:flex;align-items:baseline;gap:12px;margin-bottom:12px}.top h1{font-size:22px;margin:0}
form.card{border:1px solid var(--line);border-radius:8px;padding:12px 14px;background:var(--panel);margin-bottom:12px}
form .row{display:flex;align-items:center;gap:8px;margin:4px 0;flex-wrap:wrap}
form .row>label:first-child{width:70px;font-weight:600;color:#344054}
form .or{color:var(--muted);font-size:12px}
select,input[type=url],input[type=text]{font:inherit;padding:5px 8px;border:1px solid #c4ccd6;border-radius:5px;background:#fff}
select{max-width:260px}input[type=url]{flex:1;min-width:180px}input[type=text]{flex:1;min-width:260px}
input[type=file]{font-size:12px;max-width:220px}
button{font:inherit;font-weight:600;padding:5px 18px;border:0;border-radius:5px;background:var(--accent);color:#fff;
cursor:pointer}button:disabled{background:#98a2b3;cursor:default}
#notice{min-height:20px;color:#475467;font-size:13px}#notice.err{color:var(--bad)}
#run-top:empty+video{display:none}
"""

PAGE_SCRIPT = """
const token = new URLSearchParams(location.hash.slice(1)).get('token');
const auth = token ? {'Authorization': 'Bearer ' + token} : {};
const withToken = u => token ? u + (u.includes('?') ? '&' : '?') + 'access_token=' + encodeURIComponent(token) : u;
const q = s => document.querySelector(s);
const EVENTS = EVENT_KINDS;
let current = null, source = null, busy = false, again = false;
function say(text, cls) { const d = q('#notice'); d.textContent = text; d.className = cls || ''; }
async function api(path, options) {
  const r = await fetch(path, Object.assign({}, options, {headers: Object.assign({}, auth, (options || {}).headers)}));
  const body = await r.json().catch(() => ({}));
  const why = Array.isArray(body.detail) ? body.detail.map(d => d.loc.slice(-1)[0] + ': ' + d.msg).join('; ') : body.detail;
  if (!r.ok) throw new Error(why || r.statusText);
  return body;
}
api('/v1/media').then(b => (b.files || []).forEach(f => {
  const o = document.createElement('option'); o.value = f; o.textContent = f; q('#media').appendChild(o);
})).catch(err => say(err.message, 'err'));
function place(where, html) {
  const t = document.createElement('template');
  t.innerHTML = html;  // inert until placed: thumbnails ask for their frame with the token only
  t.content.querySelectorAll('img.thumb').forEach(i => { i.src = withToken(i.getAttribute('src')); });
  const active = document.querySelector('li.active');
  const keep = active ? active.id : null;
  q(where).replaceChildren(t.content);
  if (keep && document.getElementById(keep)) document.getElementById(keep).classList.add('active');
}
async function draw() {
  if (!current) return;
  if (busy) { again = true; return; }
  busy = true;
  const run = current;
  try {
    const v = await api('/v1/runs/' + run + '/view');
    if (run === current) { place('#run-top', v.top); place('#run-details', v.details); }
  } catch (err) { /* nothing written yet: the next event draws it */ }
  finally { busy = false; if (again) { again = false; draw(); } }
}
function follow(run) {
  source = new EventSource(withToken('/v1/runs/' + run + '/events'));
  let steps = 0;
  EVENTS.forEach(k => source.addEventListener(k, e => {
    const ev = JSON.parse(e.data);
    if (k === 'tool_returned') steps += 1;
    if (ev.depth === 0 && k === 'run_finished') { source.close(); say('finished: ' + ev.status); }
    else if (k === 'tool_called') say('working: ' + ev.name + ' (' + (steps + 1) + ' tool calls so far)');
    draw();
  }));
  source.onerror = async () => {  // the stream ended without a finish (an error) or dropped
    const state = await api('/v1/runs/' + run).catch(() => null);
    if (state && ['finished', 'cancelled', 'error'].includes(state.status)) {
      source.close();
      if (state.error) say(state.error, 'err');
      draw();
    }
  };
}
async function chosenVideo() {
  const f = q('#file').files[0];
  const json = body => ({method: 'POST', body: JSON.stringify(body), headers: {'Content-Type': 'application/json'}});
  if (f) return (await api('/v1/videos/upload', {method: 'POST', body: f,
    headers: {'Content-Type': 'application/octet-stream'}})).video_id;
  if (q('#url').value.trim()) return (await api('/v1/videos', json({url: q('#url').value.trim(), index: false}))).video_id;
  if (q('#media').value) return (await api('/v1/videos', json({path: q('#media').value, index: false}))).video_id;
  throw new Error('choose a video first: a file, a URL or an upload');
}
q('#ask-form').addEventListener('submit', async ev => {
  ev.preventDefault();
  if (source) source.close();
  current = null;
  q('#run-top').replaceChildren(); q('#run-details').replaceChildren();
  q('#ask').disabled = true;
  try {
    say('opening the video…');
    const video = await chosenVideo();
    q('#player').src = withToken('/v1/videos/' + video + '/file');
    const run = await api('/v1/runs', {method: 'POST', headers: {'Content-Type': 'application/json'},
      body: JSON.stringify({video: video, question: q('#ask-question').value})});
    current = run.run_id;
    say('asked: run ' + run.run_id + ' is starting…');
    follow(run.run_id);
  } catch (err) { say(err.message, 'err'); }
  finally { q('#ask').disabled = false; }
});
"""

PAGE = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>MCR: ask a video</title><link rel="icon" href="data:,">
<meta http-equiv="Content-Security-Policy" content="default-src 'self'; style-src 'unsafe-inline'; \
script-src 'unsafe-inline'; img-src 'self' data:; media-src 'self'">
<style>{CSS}{PAGE_CSS}</style></head><body>
<div class="top"><h1>Ask a video</h1><span class="muted">an agent answers, and shows the moments it rests on</span></div>
<form id="ask-form" class="card">
<div class="row"><label for="media">Video</label>
<select id="media"><option value="">a file from the media roots…</option></select>
<span class="or">or</span> <input type="url" id="url" placeholder="a URL: https://…" aria-label="video URL">
<span class="or">or</span> <input type="file" id="file" accept="video/*" aria-label="upload a video"></div>
<div class="row"><label for="ask-question">Question</label>
<input type="text" id="ask-question" placeholder="What does the speaker conclude?" required>
<button id="ask" type="submit">Ask</button></div>
</form>
<div id="notice" aria-live="polite"></div>
<div id="run-top"></div>
<video id="player" controls preload="metadata"></video>
<div id="run-details"></div>
<script>{SCRIPT}{PAGE_SCRIPT.replace("EVENT_KINDS", json.dumps(EVENTS))}</script></body></html>
"""


@router.get("/", response_class=HTMLResponse)
def page() -> Any:
    return HTMLResponse(PAGE)


__all__ = ["PAGE", "router"]
