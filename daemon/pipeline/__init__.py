"""One turn, engine-agnostic: the stage chain, phrase chunking, PCM blocks, timings."""
