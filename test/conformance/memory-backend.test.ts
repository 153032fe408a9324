import { MemoryBackend } from '../../src/index.js';
import { backendConformance } from './backend-kit.js';

backendConformance('MemoryBackend', () =>
  Promise.resolve({
    backend: new MemoryBackend({ history: { maxCount: 10 } }),
    maxCount: 10,
    dispose: () => Promise.resolve(),
    bounded: (bounds) => new MemoryBackend({ history: { maxCount: 10 }, ...bounds }),
  }),
);
