// The printed summary of a fuzz run.
import type { FuzzReport } from './campaign.js';

const MiB = 1024 * 1024;

/** Human-readable summary of a run. */
export function formatReport(r: FuzzReport): string {
  const lines = [
    `fuzz ${r.kind} seed ${r.seed}: ${r.messages} messages in ${r.seconds.toFixed(1)} s (${r.perSecond} messages/s)`,
    `  connections ${r.connections}, split messages ${r.splitMessages}, coalesced sends ${r.coalescedSends}, `
      + `virtio ops ${r.virtioOps} (used-ring completions ${r.virtioCompletions}), replies ${r.replies}, server requests answered ${r.serverRequests}`,
    `  per command: ${Object.entries(r.perCommand).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${v}`).join(', ')}`,
    `  alive ${r.alive}, crashes ${r.crashes.length}, hangs ${r.hangs.length}, mismatched ${r.mismatches}, `
      + `oversized ${r.oversized}, dropped with replies owed ${r.unexpectedDisconnects}, server errors logged ${r.loggedErrors}`,
    `  fds: baseline ${r.fdBaseline}, final ${r.fdFinal}; RSS: baseline ${(r.rssBaseline / MiB).toFixed(1)} MiB, `
      + `final ${(r.rssFinal / MiB).toFixed(1)} MiB (growth ${((r.rssFinal - r.rssBaseline) / MiB).toFixed(1)} MiB), `
      + `peak ${(r.rssPeak / MiB).toFixed(1)} MiB; server started ${r.serverStarts} times`,
  ];
  for (const c of r.crashes.slice(0, 5)) {
    lines.push(`  crash at message ${c.message}: code ${c.exit.code} signal ${c.exit.signal}`);
    lines.push(`    last messages: ${c.lastMessages.slice(-3).join(' | ')}`);
    lines.push(...c.stderr.slice(-6).map((l) => `    stderr: ${l}`));
  }
  for (const h of r.hangs.slice(0, 5)) lines.push(`  hang at message ${h.message}: server cpu ${h.cpuBusy}, ${h.owed} owed, oldest ${h.request}`);
  for (const f of r.findings.slice(0, 10)) lines.push(`  ${f.kind}: ${f.detail}${f.request ? ` request ${f.request}` : ''}`);
  for (const e of r.errorSamples.slice(0, 5)) lines.push(`  server error: ${e}`);
  lines.push(r.failures.length ? `FAIL: ${r.failures.join('; ')}` : 'PASS');
  return lines.join('\n');
}
