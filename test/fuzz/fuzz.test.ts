// A bounded, seeded fuzz run per device kind (the same as
// `npm run fuzz -- --kind K --count 50000 --seed 1`): the server child must
// survive every message, answer a valid request within 5 s throughout,
// answer each request in order with its id and command and no more than it
// allowed, log no unexpected errors, and end with its fds back at baseline
// and its RSS grown by less than 100 MiB.
import t from 'tap';
import { FUZZ_KINDS, RSS_GROWTH_LIMIT, runFuzz } from '../../fuzz/campaign.js';
import { formatReport } from '../../fuzz/report.js';

const COUNT = 50_000;
const SEED = 1;

for (const kind of FUZZ_KINDS) {
  t.test(`${kind}: ${COUNT} fuzzed messages, seed ${SEED}`, async (t) => {
    const r = await runFuzz({ kind, count: COUNT, seed: SEED });
    t.comment(formatReport(r));
    t.ok(r.messages >= COUNT, 'every message was sent');
    t.equal(r.crashes.length, 0, 'the server never died');
    t.ok(r.alive, 'the server is alive at the end');
    t.equal(r.hangs.length, 0, 'every valid request was answered within 5 s');
    t.equal(r.mismatches, 0, 'every reply matched its request in id, command and order');
    t.equal(r.oversized, 0, 'no reply was larger than its request allowed');
    t.equal(r.unexpectedDisconnects, 0, 'no well-framed connection was dropped with replies owed');
    t.equal(r.loggedErrors, 0, 'the server logged no unexpected errors');
    t.equal(r.fdFinal, r.fdBaseline, 'the fd count is back at its baseline');
    t.ok(r.rssFinal - r.rssBaseline < RSS_GROWTH_LIMIT, 'RSS grew by less than 100 MiB');
  });
}
