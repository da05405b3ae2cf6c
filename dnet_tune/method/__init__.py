"""Difficulty-Net and the baselines, all behind one `Method` interface used by the train loop."""
