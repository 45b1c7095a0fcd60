"""The stages of one Self-Lengthen iteration, one file each; the pipeline calls them in order."""
