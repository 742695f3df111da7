"""Evaluation of generated operating-room images: fidelity, memorisation, scene-graph consistency."""
