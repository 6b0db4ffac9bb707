// A consumer project that imports only the package's public exports (through
// node_modules/vfio-user-ts, as an installed package would be) type-checks
// with tsc, runs, and cannot reach internal paths.
import t, { type Test } from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const tsc = path.join(root, 'node_modules/typescript/bin/tsc');

const TSCONFIG = {
  compilerOptions: {
    target: 'ES2022',
    module: 'NodeNext',
    moduleResolution: 'NodeNext',
    strict: true,
    types: ['node'],
    skipLibCheck: false,
    outDir: 'out',
    rootDir: 'src',
  },
  include: ['src'],
};

/** A device module written against `vfio-user-ts/device` only. */
const DEVICE = `import { defineDevice, PciDevice, DmaFault, type DeviceDma, type PciDeviceSpec } from 'vfio-user-ts/device';

export default defineDevice({
  kind: 'scratch',
  description: 'a register file that can copy guest memory',
  options: {
    registers: { type: 'u32', help: 'number of 32-bit registers', min: 1, max: 64, default: 4 },
    label: { type: 'string', help: 'a label' },
  },
  create(options, context) {
    const count: number = options.registers;
    const label: string | undefined = options.label;
    // @ts-expect-error not an option of this schema
    void options.colour;
    const regs = new Uint32Array(count);
    let dma: DeviceDma | undefined;
    const spec: PciDeviceSpec = {
      name: context.name,
      ids: { vendor: 0x1234, device: 0x11e8, classCode: 0xff0000 },
      bars: [{ index: 0, kind: 'mem32', size: 4096, handlers: {
        read: (off) => regs[off / 4] ?? 0,
        write: (off, _data, value) => { if (typeof value === 'number') regs[off / 4] = value; },
      } }],
      attach: (client) => { dma = client.dma; },
      detach: () => { dma = undefined; },
    };
    const device = new PciDevice(spec, { log: context.log });
    return {
      device,
      label,
      async copy(src: bigint, dst: bigint, length: number): Promise<string> {
        try {
          await dma?.write(dst, await dma.read(src, length));
          return 'ok';
        } catch (err) {
          return err instanceof DmaFault ? err.reason : 'error';
        }
      },
    };
  },
});
`;

/** Serves that device through the root export and asks it GET_INFO with the testing client. */
const MAIN = `import { startServer, deviceKinds, type RunningServer, type Idio16 } from 'vfio-user-ts';
import { IommuContext, PAGE_SIZE } from 'vfio-user-ts/iommu';
import { VfioUserClient, Command, encodeDeviceGetInfoRequest, decodeDeviceGetInfoReply } from 'vfio-user-ts/testing';
import scratch from './scratch.js';

const sock = process.argv[2]!;
const rt: RunningServer = await startServer({ devices: [
  { name: 's0', kind: scratch, socket: sock, options: { registers: 8 } },
] });
const ctx: IommuContext | undefined = rt.contexts.get('s0');
const c = await VfioUserClient.open(sock);
const info = decodeDeviceGetInfoReply((await c.request(Command.DEVICE_GET_INFO, encodeDeviceGetInfoRequest())).payload);
c.close();
await rt.close();
const gpio: Idio16 | undefined = undefined;
console.log(JSON.stringify({ numRegions: info.numRegions, kinds: deviceKinds().map((d) => d.kind), ctx: ctx !== undefined, page: PAGE_SIZE, gpio }));
`;

/** The README's TypeScript examples (the ```ts blocks), so they cannot drift from the API. */
function readmeExamples(): Record<string, string> {
  const readme = fs.readFileSync(path.join(root, 'README.md'), 'utf8');
  const blocks = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]!);
  return Object.fromEntries(blocks.map((b, i) => [`src/readme-${i}.ts`, b]));
}

function project(t: Test, files: Record<string, string>): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vut-consumer-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.mkdirSync(path.join(dir, 'node_modules'));
  fs.symlinkSync(root, path.join(dir, 'node_modules/vfio-user-ts'));
  fs.symlinkSync(path.join(root, 'node_modules/@types'), path.join(dir, 'node_modules/@types'));
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
  fs.writeFileSync(path.join(dir, 'tsconfig.json'), JSON.stringify(TSCONFIG));
  for (const [name, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    fs.writeFileSync(path.join(dir, name), text);
  }
  return dir;
}

t.test('a consumer project using only the public exports compiles and runs; internal paths are not importable', async (t) => {
  const dir = project(t, {
    'src/scratch.ts': DEVICE,
    'src/main.ts': MAIN,
    'src/private.ts': `import { startServer } from 'vfio-user-ts/dist/server/runtime.js';\nvoid startServer;\n`,
    ...readmeExamples(),
  });
  t.ok(Object.keys(readmeExamples()).length >= 2, 'the README has TypeScript examples');
  const r = spawnSync(process.execPath, [tsc, '-p', dir], { encoding: 'utf8' });
  const errors = r.stdout.split('\n').filter((l) => /error TS\d+/.test(l));
  t.equal(errors.length, 1, `only the internal import fails:\n${r.stdout}${r.stderr}`);
  t.match(errors[0], /src\/private\.ts.*error TS\d+: Cannot find module 'vfio-user-ts\/dist\/server\/runtime\.js'/);
  const denied = spawnSync(process.execPath, ['--input-type=module', '-e', "await import('vfio-user-ts/dist/server/runtime.js')"], { encoding: 'utf8', cwd: dir });
  t.match(denied.stderr, /ERR_PACKAGE_PATH_NOT_EXPORTED/, 'node refuses it too');
  const sock = path.join(dir, 's.sock');
  const run = spawnSync(process.execPath, [path.join(dir, 'out/main.js'), sock], { encoding: 'utf8', cwd: dir });
  t.equal(run.status, 0, run.stderr);
  t.same(JSON.parse(run.stdout || 'null'), { numRegions: 9, kinds: ['gpio', 'rng', 'blk', 'nvme'], ctx: true, page: 4096 });
});
