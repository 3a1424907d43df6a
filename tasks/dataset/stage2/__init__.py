"""Stage 2: real multi-person clips for refinement, in one place. `ties` analyses a candidate
(stable faces, each voice tied to a face), `store` keeps its verdict and arrays, `render` makes
its training samples."""
