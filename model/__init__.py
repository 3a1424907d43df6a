"""The identity-aware DiT and its training (see DESIGN.md section 6). Built in a later issue."""
