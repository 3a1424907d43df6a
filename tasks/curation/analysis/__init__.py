"""The per-clip analysis stages: faces, lips and eyes, quality, speech (in its own environment),
singing, who speaks (Light-ASD), lip sync (weight-free or SyncNet) with phone timing; `analyze`
chains them, cheapest first."""
