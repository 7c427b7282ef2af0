"""The service's web page at ``/``: pick a video (from the media roots, a URL or an upload), ask,
watch the run's trace stream in, then play the evidence spans on the video's timeline. Plain
HTML and a little JavaScript, served by the package: no build step, nothing from a CDN. A token
given as ``/#token=...`` is sent with every request."""

PAGE = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>MCR: ask a video</title><link rel="icon" href="data:,">
<meta http-equiv="Content-Security-Policy" content="default-src 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src 'self' data:; media-src 'self'">
<style>
body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1000px;padding:16px;color:#1d2330}
fieldset{border:1px solid #ccd;margin:0 0 10px;padding:8px}input[type=text]{width:60%}
#trace{font:12px/1.4 ui-monospace,monospace;background:#f4f6f8;padding:6px;max-height:280px;overflow:auto;white-space:pre-wrap}
#timeline{position:relative;height:28px;background:#eef1f4;border:1px solid #ccd;margin:8px 0}
#timeline .mark{position:absolute;top:3px;height:22px;background:#e8a33d;cursor:pointer;min-width:3px}
#timeline .seen{position:absolute;top:0;height:28px;width:1px;background:#333}
#answer{font-size:17px;margin:8px 0}video{width:100%;max-height:360px;background:#000}.err{color:#b03a2e}
</style></head><body>
<h1>Ask a video</h1>
<fieldset><legend>Video</legend>
<select id="media"><option value="">a file from the media roots…</option></select>
or URL <input type="text" id="url" placeholder="https://…">
or upload <input type="file" id="file" accept="video/*">
</fieldset>
<fieldset><legend>Question</legend>
<input type="text" id="question" placeholder="What does the speaker conclude?"> <button id="ask">Ask</button>
</fieldset>
<div id="status" aria-live="polite"></div>
<div id="trace"></div>
<div id="answer"></div>
<div id="timeline" title="the video's timeline: evidence marks play when clicked"></div>
<video id="player" controls preload="metadata"></video>
<script>
const token = new URLSearchParams(location.hash.slice(1)).get('token');
const auth = token ? {'Authorization': 'Bearer ' + token} : {};
const q = s => document.querySelector(s);
let duration = 0;
function say(text, cls) { const d = q('#status'); d.textContent = text; d.className = cls || ''; }
function line(text) { const t = q('#trace'); t.textContent += text + '\n'; t.scrollTop = t.scrollHeight; }
function fmt(t) { const s = Math.max(0, t); return new Date(s * 1000).toISOString().substr(11, 10); }
async function api(path, options) {
  const r = await fetch(path, Object.assign({}, options, {headers: Object.assign({}, auth, (options || {}).headers)}));
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.detail || r.statusText);
  return body;
}
fetch('/v1/media', {headers: auth}).then(r => r.json()).then(b => (b.files || []).forEach(f => {
  const o = document.createElement('option'); o.value = f; o.textContent = f; q('#media').appendChild(o);
})).catch(() => {});
function mark(a, b, cls, title) {
  if (!duration) return;
  const m = document.createElement('div'); m.className = cls;
  m.style.left = (100 * a / duration) + '%';
  if (cls === 'mark') m.style.width = (100 * (b - a) / duration) + '%';
  m.dataset.start = a; m.title = title;
  m.addEventListener('click', () => { q('#player').currentTime = a; q('#player').play().catch(() => {}); });
  q('#timeline').appendChild(m);
}
function show(ev) {
  const k = ev.event;
  if (k === 'run_started' && ev.depth === 0) { duration = (ev.video || {}).duration || 0; line('started: ' + ev.question); }
  else if (k === 'phase') line(ev.phase + ': ' + (ev.text || '').slice(0, 300));
  else if (k === 'tool_called') line('→ ' + ev.name + ' ' + JSON.stringify(ev.arguments));
  else if (k === 'tool_returned') {
    line('← ' + ev.name + ': ' + (ev.text || '').slice(0, 200));
    ((ev.frames || {}).timestamps || []).forEach(t => mark(t, t, 'seen', 'frame ' + fmt(t)));
  }
  else if (k === 'verification') line('check (' + ev.source + '): ' + ev.verdict + ' ' + (ev.reason || ''));
  else if (k === 'run_finished' && ev.depth === 0) {
    q('#answer').textContent = 'Answer: ' + (ev.answer || '(none)') + '  [' + ev.status + ']';
    (ev.evidence || []).forEach(s => mark(s[0], s[1], 'mark', 'evidence ' + fmt(s[0]) + '-' + fmt(s[1])));
    say('done');
  }
}
async function chosenVideo() {
  const f = q('#file').files[0];
  if (f) return (await api('/v1/videos/upload', {method: 'POST', body: f, headers: {'Content-Type': 'application/octet-stream'}})).video_id;
  if (q('#url').value.trim()) return (await api('/v1/videos', {method: 'POST', body: JSON.stringify({url: q('#url').value.trim()}), headers: {'Content-Type': 'application/json'}})).video_id;
  if (q('#media').value) return (await api('/v1/videos', {method: 'POST', body: JSON.stringify({path: q('#media').value}), headers: {'Content-Type': 'application/json'}})).video_id;
  throw new Error('choose a video first');
}
q('#ask').addEventListener('click', async () => {
  q('#trace').textContent = ''; q('#answer').textContent = ''; q('#timeline').innerHTML = '';
  try {
    say('opening the video…');
    const video = await chosenVideo();
    q('#player').src = '/v1/videos/' + video + '/file' + (token ? '?access_token=' + encodeURIComponent(token) : '');
    const run = await api('/v1/runs', {method: 'POST', headers: {'Content-Type': 'application/json'},
      body: JSON.stringify({video: video, question: q('#question').value})});
    say('running ' + run.run_id + '…');
    const src = new EventSource('/v1/runs/' + run.run_id + '/events' + (token ? '?access_token=' + encodeURIComponent(token) : ''));
    src.onmessage = e => show(JSON.parse(e.data));
    ['run_started', 'phase', 'tool_called', 'tool_returned', 'verification', 'model_called', 'answer_proposed',
     'index_stage', 'memory_written'].forEach(k => src.addEventListener(k, e => show(JSON.parse(e.data))));
    src.addEventListener('run_finished', e => { const ev = JSON.parse(e.data); show(ev); if (ev.depth === 0) src.close(); });
    src.onerror = () => { if (src.readyState === 2) return; };
  } catch (err) { say(err.message, 'err'); }
});
</script></body></html>
"""
