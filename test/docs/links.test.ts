/**
 * The project's Markdown (README.md, CHANGELOG.md, docs/**) cannot point at nothing: every relative
 * link and image names a file of the repository, every `#anchor` a heading of its target (GitHub's
 * heading ids, which TypeDoc's site uses too), and every `{@include}` a file.
 *
 * Nor can it hold a bare file name such as DESIGN.md outside a code span or a link: `.md` is a
 * top-level domain, so Markdown renderers that autolink (TypeDoc's does) turn it into a link to
 * `http://DESIGN.md`. Write a file name as a code span, or as a real link when the file is in the
 * repository.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../..', import.meta.url));

/** README.md, CHANGELOG.md and every Markdown file under docs/ (not the generated docs/api). */
function projectDocs(): string[] {
  const docs = (readdirSync(join(root, 'docs'), { recursive: true }) as string[])
    .filter((file) => file.endsWith('.md') && !file.startsWith(`api/`))
    .map((file) => join('docs', file));
  return ['README.md', 'CHANGELOG.md', ...docs.sort()];
}

/** Blanks what Markdown does not read as prose (front matter, fenced code, HTML comments), keeping line numbers. */
function prose(text: string): string {
  const blank = (s: string) => s.replace(/[^\n]/g, ' ');
  return text
    .replace(/^---\n[\s\S]*?\n---\n/, blank)
    .replace(/^(```|~~~)[^\n]*\n[\s\S]*?^\1[ \t]*$/gm, blank)
    .replace(/<!--[\s\S]*?-->/g, blank);
}

/** Blanks code spans (a run of backticks up to the next run of the same length). */
function withoutCodeSpans(line: string): string {
  return line.replace(/(`+)(?!`)[\s\S]*?(?<!`)\1(?!`)/g, (s) => ' '.repeat(s.length));
}

/** GitHub's id for a heading: lowercased text, only letters, digits, `-`, `_` and spaces kept, spaces as `-`. */
export function slug(heading: string): string {
  const text = heading
    .replace(/!?\[([^\]]*)\]\([^)]*\)/g, '$1')
    .replace(/`+/g, '')
    .replace(/<[^>]+>/g, '');
  return text
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\p{M}\s_-]/gu, '')
    .replace(/\s/g, '-');
}

/** The ids of a Markdown file's headings, numbered as GitHub numbers repeats (`targets`, `targets-1`, ...). */
export function anchors(text: string): Set<string> {
  const seen = new Map<string, number>();
  const ids = new Set<string>();
  for (const line of prose(text).split('\n')) {
    const m = /^ {0,3}#{1,6}[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$/.exec(line);
    if (!m) continue;
    const base = slug(m[1]!);
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    ids.add(n === 0 ? base : `${base}-${n}`);
  }
  for (const m of text.matchAll(/<a\s[^>]*\b(?:id|name)="([^"]+)"/g)) ids.add(m[1]!);
  return ids;
}

interface Problem {
  readonly line: number;
  readonly problem: string;
}

/** What is wrong with the links and file names of `text`, the content of `file` (relative to `base`). */
export function check(file: string, text: string, base: string = root): Problem[] {
  const problems: Problem[] = [];
  const lines = prose(text).split('\n');
  const anchorsOf = new Map<string, Set<string>>();
  const idsOf = (path: string) => {
    let ids = anchorsOf.get(path);
    if (!ids) anchorsOf.set(path, (ids = anchors(path === file ? text : readFileSync(join(base, path), 'utf8'))));
    return ids;
  };
  const target = (line: number, href: string) => {
    if (/^[a-z][a-z0-9+.-]*:/i.test(href) || href.startsWith('//')) return; // https:, mailto:, ...
    const [pathPart = '', anchor] = href.split('#', 2);
    const path = pathPart === '' ? file : relative(base, resolve(base, dirname(file), decodeURIComponent(pathPart)));
    if (pathPart !== '') {
      const absolute = join(base, path);
      if (!existsSync(absolute)) return void problems.push({ line, problem: `links to ${href}: no file ${path}` });
      if (!statSync(absolute).isFile()) return void problems.push({ line, problem: `links to ${href}: ${path} is a folder, not a file` });
    }
    if (anchor !== undefined && path.endsWith('.md') && !idsOf(path).has(anchor)) {
      problems.push({ line, problem: `links to ${href}: ${path} has no heading with the id "${anchor}"` });
    }
  };
  lines.forEach((raw, i) => {
    const line = i + 1;
    const code = withoutCodeSpans(raw);
    for (const m of code.matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) target(line, m[1]!);
    for (const m of code.matchAll(/^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)/g)) target(line, m[1]!);
    for (const m of code.matchAll(/<(?:a|img)\s[^>]*\b(?:href|src)="([^"]+)"/g)) target(line, m[1]!);
    for (const m of code.matchAll(/\{@include(?:Code)?\s+([^\s}#:]+)/g)) target(line, m[1]!);
    // What an autolinking renderer still reads as text: no link, no URL, no HTML tag, no TypeDoc tag.
    const text = code
      .replace(/\{@[^}]*\}/g, (s) => ' '.repeat(s.length))
      .replace(/!?\[((?:[^\]\\]|\\.)*)\]\([^)]*\)/g, (s) => ' '.repeat(s.length))
      .replace(/<[^>]*>/g, (s) => ' '.repeat(s.length))
      .replace(/\b[a-z][a-z0-9+.-]*:\/\/\S+/gi, (s) => ' '.repeat(s.length));
    for (const m of text.matchAll(/(?<![\w./@-])[\w./-]*[\w-]\.md\b/gi)) {
      problems.push({ line, problem: `bare file name ${m[0]} (an autolinking renderer links it to http://${m[0].split('/').pop()}): write it as a code span or a link` });
    }
  });
  return problems;
}

describe('the checker', () => {
  const fixture = [
    '# A guide',
    '',
    '## Frameworks (`patchbay/express`, `patchbay/web`)',
    '',
    'See [the README](README.md), [frameworks](#frameworks-patchbayexpress-patchbayweb) and `DESIGN.md`.',
    'Not [a file](./missing.md), nor [a heading](#nowhere), nor [a folder](docs).',
    'The targets are in DESIGN.md, and docs/notes.md has more.',
    '```md',
    'In a fence: [gone](gone.md) and DESIGN.md.',
    '```',
  ].join('\n');

  it('finds a link to a missing file, a missing anchor, a folder and bare .md names, nothing in code', () => {
    expect(check('guide.md', fixture).map((p) => `${p.line}: ${p.problem.split(':')[0]}`)).toEqual([
      '6: links to ./missing.md',
      '6: links to #nowhere',
      '6: links to docs',
      '7: bare file name DESIGN.md (an autolinking renderer links it to http',
      '7: bare file name docs/notes.md (an autolinking renderer links it to http',
    ]);
  });

  it('numbers repeated headings as GitHub does', () => {
    expect([...anchors('## Targets\n### Targets\n## Sidecar (`patchbay/sidecars`)\n')]).toEqual([
      'targets',
      'targets-1',
      'sidecar-patchbaysidecars',
    ]);
  });
});

describe('the project docs', () => {
  it.each(projectDocs())('%s has no broken relative link and no bare .md file name', (file) => {
    const problems = check(file, readFileSync(join(root, file), 'utf8')).map((p) => `${file}:${p.line}: ${p.problem}`);
    expect(problems).toEqual([]);
  });
});
