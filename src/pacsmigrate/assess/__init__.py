"""Assess: data-quality findings and the catalogue report a migration team plans from."""
