"""The MTP demo (``mtp demo`` / ``make demo``): does multi-task pretraining help downstream?

One command runs the whole study on 2 CPU cores in about ten minutes (docs/DEMO.md):

1. writes synthetic SAMRS sets (SOTA / SIOR / FAST) and few-label downstream sets (LoveDA and LEVIR-CD
   formats) from disjoint generator seeds, so the pretraining never sees a downstream image;
2. pretrains a tiny ViT+RVSA on all three pretraining tasks through ``mtp fit`` and exports the official
   encoder / whole-model files (cached: re-used while its config, data and code are unchanged);
3. fine-tunes every arm (from scratch, from the MTP encoder, from the MTP encoder + reused decoder) with
   the same data and hyper-parameters over several seeds;
4. reports mean ± std per arm, the paired gain and a 2σ verdict (non-zero exit when it fails), and writes
   ``report.html`` with learning curves and held-out tiles.

Modules: :mod:`~mtp.demo.settings` (the protocol's numbers), :mod:`~mtp.demo.data`,
:mod:`~mtp.demo.pretrain`, :mod:`~mtp.demo.finetune`, :mod:`~mtp.demo.stats`, :mod:`~mtp.demo.report`,
:mod:`~mtp.demo.study` (runs it all).
"""
