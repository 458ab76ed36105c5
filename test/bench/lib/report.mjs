// report: the results table (text + markdown) and tsblock/peer ratios.

const fmt = (x) => (x === undefined || x === null || Number.isNaN(x) ? '—' : typeof x === 'number' ? (Math.abs(x) >= 100 ? x.toFixed(0) : Math.abs(x) >= 10 ? x.toFixed(1) : x.toFixed(2)) : String(x));

/** rows flattens per-target results into metric rows: [metric, unit, {target: value}]. */
export function metricRows(results) {
  const rows = [];
  const add = (metric, unit, get) => {
    const vals = {};
    for (const [id, r] of Object.entries(results)) {
      try {
        const v = get(r);
        if (v !== undefined) vals[id] = v;
      } catch {
        /* scenario not run */
      }
    }
    if (Object.keys(vals).length) rows.push({ metric, unit, vals });
  };
  const rpcs = ['prepare_first', 'prepare_parent', 'view', 'mounts', 'stat', 'commit', 'remove', 'remove_view', 'remove_committed'];
  for (const k of rpcs) {
    add(`${k} p50`, 'ms', (r) => r.latency?.[k]?.p50);
    add(`${k} p99`, 'ms', (r) => r.latency?.[k]?.p99);
  }
  add('list 1,000 p50', 'ms', (r) => r.scale?.list?.[1000]?.p50);
  add('list 10,000 p50', 'ms', (r) => r.scale?.list?.[10000]?.p50);
  add('chain16 total', 'ms', (r) => r.chain16?.total_ms);
  add('chain16 prepare/layer p50', 'ms', (r) => r.chain16?.per_layer.prepare.p50);
  add('chain16 mount/layer p50', 'ms', (r) => r.chain16?.per_layer.mount.p50);
  add('chain16 commit/layer p50', 'ms', (r) => r.chain16?.per_layer.commit.p50);
  add('chain200 layer p50', 'ms', (r) => r.chain200?.per_layer.layer.p50);
  add('chain200 mount top p50', 'ms', (r) => r.chain200?.mount_top.p50);
  add('chain200 mount 1-layer p50', 'ms', (r) => r.chain200?.mount_one.p50);
  add('chain200 top/1-layer', '×', (r) => r.chain200?.top_vs_one);
  add('chain200 top/1-layer (p25)', '×', (r) => r.chain200?.top_vs_one_p25);
  add('import 16 layers p50', 'ms', (r) => r.containerd?.import?.p50);
  add('ctr run to first output p50', 'ms', (r) => r.containerd?.run?.p50);
  add('8 clients', 'ops/s', (r) => r.concurrency?.ops_per_s);
  add('snapshots in store (scale)', 'n', (r) => r.scale?.snapshots);
  add('start-up with that store', 'ms', (r) => r.scale?.startup_ms?.p50);
  add('RSS with that store, after 1 List', 'MiB', (r) => r.scale?.rss_mib_after_restart_and_1_list);
  add('RSS with that store, after 5 Lists', 'MiB', (r) => r.scale?.rss_mib_after_restart_and_5_lists);
  return rows;
}

/** ratios computes tsblock-X / peer for every metric, pair by pair. */
export function ratios(rows) {
  const out = {};
  for (const { metric, vals } of rows) {
    for (const [a, va] of Object.entries(vals)) {
      if (!a.startsWith('tsblock')) continue;
      for (const [b, vb] of Object.entries(vals)) {
        if (b.startsWith('tsblock') || !vb || typeof va !== 'number' || metric.startsWith('snapshots in store')) continue;
        (out[`${a}/${b}`] ??= {})[metric] = Math.round((va / vb) * 100) / 100;
      }
    }
  }
  return out;
}

/** markdown renders the table with one column per target plus ratio columns. */
export function markdown(rows, ids, ratioTable) {
  const pairs = Object.keys(ratioTable);
  const head = ['metric', 'unit', ...ids, ...pairs];
  const lines = [`| ${head.join(' | ')} |`, `| ${head.map(() => '---').join(' | ')} |`];
  for (const { metric, unit, vals } of rows) {
    const cells = [metric, unit, ...ids.map((id) => fmt(vals[id])), ...pairs.map((p) => fmt(ratioTable[p][metric]))];
    lines.push(`| ${cells.join(' | ')} |`);
  }
  return lines.join('\n');
}

/**
 * goals checks issue 7's targets against one run: [goal, value, limit, ok].
 * Ratios are taken against every overlayfs variant that ran.
 */
export function goals(results) {
  const out = [];
  const ts = results['tsblock-xfs'];
  if (!ts) return out;
  const overlays = Object.keys(results).filter((k) => k.startsWith('overlayfs'));
  const r2 = (x) => Math.round(x * 100) / 100;
  for (const rpc of ['prepare_parent', 'commit', 'remove']) {
    const v = ts.latency?.[rpc]?.p50;
    if (v === undefined) continue;
    out.push([`blockfile/XFS ${rpc} p50 < 5 ms`, `${v} ms`, '5 ms', v < 5]);
    for (const o of overlays) {
      const p = results[o].latency?.[rpc]?.p50;
      if (p) out.push([`blockfile/XFS ${rpc} p50 ≤ 1.5× ${o}`, `${r2(v / p)}×`, '1.5×', v / p <= 1.5]);
    }
  }
  const t1 = ts.chain200?.top_vs_one;
  if (t1 !== undefined) out.push(['200-layer top mount ≤ 1.2× 1-layer', `${t1}×`, '1.2×', t1 <= 1.2]);
  const imp = ts.containerd?.import?.p50;
  if (imp !== undefined) {
    for (const o of overlays) {
      const p = results[o].containerd?.import?.p50;
      if (p) out.push([`import ≤ 1.3× ${o}`, `${r2(imp / p)}×`, '1.3×', imp / p <= 1.3]);
    }
  }
  for (const [k, label] of [['rss_mib_after_restart_and_1_list', 'after 1 List'], ['rss_mib_after_restart_and_5_lists', 'after 5 Lists']]) {
    const v = ts.scale?.[k];
    if (v !== undefined) out.push([`RSS < 100 MB with ${ts.scale.snapshots} snapshots, ${label}`, `${v} MiB`, '100 MB (95.4 MiB)', v * 1.048576 < 100]);
  }
  const st = ts.scale?.startup_ms?.p50;
  if (st !== undefined) out.push([`start-up < 1 s with ${ts.scale.snapshots} snapshots`, `${st} ms`, '1000 ms', st < 1000]);
  return out;
}

/** goalsMarkdown renders goals() as a table. */
export function goalsMarkdown(rows) {
  return ['| goal | value | limit | met |', '| --- | --- | --- | --- |', ...rows.map(([g, v, l, ok]) => `| ${g} | ${v} | ${l} | ${ok ? 'yes' : '**no**'} |`)].join('\n');
}
