export declare const entries: { subpath: string; source: string; out: string }[];
