// Progress polling, keyboard shortcuts and one-click decisions. No external libraries.
(function () {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;

  // Poll running jobs; reload the page when one finishes so its result shows.
  const running = Array.from(document.querySelectorAll('[data-job]')).filter(
    (el) => (el.dataset.status || el.querySelector('.status')?.textContent || 'running').trim() === 'running');
  const ids = [...new Set(running.map((el) => el.dataset.job))];
  ids.forEach((id) => {
    const timer = setInterval(async () => {
      const r = await fetch('/api/jobs/' + id);
      if (!r.ok) { clearInterval(timer); return; }
      const j = await r.json();
      document.querySelectorAll('[data-job="' + id + '"]').forEach((el) => {
        el.querySelectorAll('progress').forEach((p) => { p.value = j.progress; });
        el.querySelectorAll('.msg').forEach((m) => { m.textContent = j.message; });
      });
      if (j.status !== 'running') { clearInterval(timer); location.reload(); }
    }, 1000);
  });

  // Verification queue.
  const rows = Array.from(document.querySelectorAll('tr.cand'));
  async function decide(id, action) {
    const body = new URLSearchParams({ csrf: csrf, action: action, ids: id });
    const r = await fetch('/queue/decide', { method: 'POST', body: body,
      headers: { 'Accept': 'application/json', 'X-CSRF-Token': csrf } });
    if (!r.ok) { alert((await r.json()).error || 'request failed'); return; }
    const j = await r.json();
    const row = document.querySelector('tr.cand[data-id="' + id + '"]');
    const status = action === 'confirm' ? 'confirmed' : 'discarded';
    row.dataset.status = status;
    row.querySelector('.status').textContent = status;
    const c = j.counts;
    const counts = document.getElementById('counts');
    if (counts) counts.textContent = 'pending ' + c.pending + ' · confirmed ' + c.confirmed + ' · discarded ' + c.discarded + ' · injected ' + c.injected;
  }
  document.querySelectorAll('button[data-action]').forEach((b) => {
    b.addEventListener('click', () => decide(b.dataset.id, b.dataset.action));
  });
  const all = document.getElementById('select-all');
  if (all) all.addEventListener('change', () => document.querySelectorAll('input.sel').forEach((c) => { c.checked = all.checked; }));
  let focus = rows.length ? 0 : -1;
  function show() { rows.forEach((r, i) => r.classList.toggle('focused', i === focus)); if (focus >= 0) rows[focus].scrollIntoView({ block: 'nearest' }); }
  show();
  document.addEventListener('keydown', (e) => {
    if (!rows.length || ['INPUT', 'SELECT', 'TEXTAREA'].includes(e.target.tagName)) return;
    const row = rows[focus];
    if (e.key === 'j') { focus = Math.min(rows.length - 1, focus + 1); show(); }
    else if (e.key === 'k') { focus = Math.max(0, focus - 1); show(); }
    else if (e.key === 'c') { decide(row.dataset.id, 'confirm'); focus = Math.min(rows.length - 1, focus + 1); show(); }
    else if (e.key === 'd') { decide(row.dataset.id, 'discard'); focus = Math.min(rows.length - 1, focus + 1); show(); }
    else if (e.key === 'x') { const c = row.querySelector('input.sel'); c.checked = !c.checked; }
    else if (e.key === ' ') { e.preventDefault(); const a = row.querySelector('audio'); a.paused ? a.play() : a.pause(); }
  });
})();
