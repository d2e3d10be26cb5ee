"""CLIP-guided generation: an image optimised so that a CLIP model scores its random, distorted
cutouts against the prompt (VQGAN+CLIP's method), with panoramas whose prompt changes across x,
tone symmetry and semantic symmetry. A text→image model family for any network; the images an
output passes through are stored as its invocation's intermediate outputs."""
