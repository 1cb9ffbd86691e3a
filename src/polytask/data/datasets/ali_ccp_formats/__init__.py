"""The Ali-CCP file formats, one module each: :mod:`.rechub` (torch-rechub's CSV),
:mod:`.paddlerec` (PaddleRec's ESMM lines), :mod:`.tianchi` (Alibaba's raw ``sample_skeleton`` +
``common_features`` files), and :mod:`.shared` (labels, the 23 fields, file discovery, line
parsing). The registered dataset and the choice between the formats are in
:mod:`polytask.data.datasets.ali_ccp`."""
