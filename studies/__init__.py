"""Multi-seed variance studies: heads x training seeds x sampling seeds, with honest statistics."""
