"""stargate: a reproducible pipeline for STaR-GATE (Andukuri et al., arXiv 2403.19154)."""

__version__ = "0.1.0"
