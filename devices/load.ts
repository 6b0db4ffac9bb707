// Device kinds by name: a built-in kind ("gpio") or the path of the user's
// own ESM module ("./my-device.js") whose default export is a definition.
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { builtinDevice } from './index.js';
import { checkDefinition, DefinitionError, type DeviceDefinition } from './definition.js';

/** True when a kind names a module file rather than a built-in: starts with ./, ../ or /, or ends in .js/.mjs. */
export function isModulePath(kind: string): boolean {
  return /^\.{0,2}\//.test(kind) || /\.m?js$/.test(kind);
}

/**
 * Imports a device module (a path resolved against `baseDir`) and checks its
 * default export; errors name the module and what is missing.
 */
export async function loadDeviceModule(file: string, baseDir: string = process.cwd()): Promise<DeviceDefinition> {
  const resolved = path.resolve(baseDir, file);
  if (!fs.existsSync(resolved)) throw new DefinitionError(`device module ${file} (${resolved}): no such file`);
  let mod: Record<string, unknown>;
  try {
    mod = (await import(pathToFileURL(resolved).href)) as Record<string, unknown>;
  } catch (err) {
    throw new DefinitionError(`device module ${file} (${resolved}): cannot load it: ${(err as Error).message}`);
  }
  if (mod.default === undefined) {
    const named = Object.keys(mod);
    throw new DefinitionError(
      `device module ${file}: no default export (its default export must be the device definition: ` +
        `{ kind, description, options, create }${named.length ? `; it exports only ${named.join(', ')}` : ''})`,
    );
  }
  return checkDefinition(mod.default, `device module ${file}`);
}

/** A built-in kind's definition, or a module path's (resolved against `baseDir`). */
export async function resolveDeviceKind(kind: string, baseDir?: string): Promise<DeviceDefinition> {
  return isModulePath(kind) ? loadDeviceModule(kind, baseDir) : builtinDevice(kind);
}

/** How errors name a device of this kind: "a gpio device" or "the device module ./x.js". */
export function kindLabel(kind: string, definition: DeviceDefinition): string {
  return isModulePath(kind) ? `the device module ${kind}` : `a ${definition.kind} device`;
}
