import { ESLint } from 'eslint';
import { describe, expect, it } from 'vitest';

// The layer rule of CONVENTIONS.md rule 1, run through ESLint's API on code that is never written
// to disk: a wrong-way import must fail lint, a right-way one must pass.
const eslint = new ESLint({ cwd: new URL('../..', import.meta.url).pathname });

async function lint(filePath: string, code: string): Promise<string[]> {
  const [result] = await eslint.lintText(code, { filePath });
  return (result?.messages ?? []).filter((m) => m.ruleId === 'no-restricted-imports').map((m) => m.message);
}

describe('layer lint rule', () => {
  it('fails core importing purgatory (upward)', async () => {
    const messages = await lint('src/core/x.ts', "import { Purgatory } from '../purgatory/index.js';\nexport { Purgatory };\n");
    expect(messages).toHaveLength(1);
    expect(messages[0]).toMatch(/Layer "core" must not import "purgatory"/);
  });

  it('fails purgatory importing pubsub (sideways)', async () => {
    const messages = await lint('src/purgatory/x.ts', "import { a } from '../pubsub/broker.js';\nexport { a };\n");
    expect(messages).toHaveLength(1);
    expect(messages[0]).toMatch(/"purgatory" must not import "pubsub"/);
  });

  it('fails node:http in the purgatory', async () => {
    const messages = await lint('src/purgatory/x.ts', "import http from 'node:http';\nexport { http };\n");
    expect(messages).toHaveLength(1);
    expect(messages[0]).toMatch(/knows nothing of HTTP/);
  });

  it('passes purgatory importing core (downward)', async () => {
    expect(await lint('src/purgatory/x.ts', "import { ManualClock } from '../core/clock.js';\nexport { ManualClock };\n")).toEqual([]);
  });

  it('fails an adapter reaching past a handler entry point', async () => {
    const messages = await lint('src/adapters/express/x.ts', "import { a } from '../../sse/sse-stream.js';\nexport { a };\n");
    expect(messages.some((m) => /a folder's entry points/.test(m))).toBe(true);
    expect(await lint('src/adapters/express/x.ts', "import { a } from '../../sse/index.js';\nexport { a };\n")).toEqual([]);
    // A folder's internal.js: what the library shares with the adapters without publishing it.
    expect(await lint('src/adapters/express/x.ts', "import { a } from '../../http/internal.js';\nexport { a };\n")).toEqual([]);
  });
});
