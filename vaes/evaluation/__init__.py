"""Evaluation of a trained run: the image sets and their metrics (quality), FID and its
Inception weights, KID and precision/recall, the Frechet distance, the domain classifier, the
held-out likelihood and the originals' renormalisation."""
