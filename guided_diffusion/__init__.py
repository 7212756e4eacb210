"""Whole-body low-dose PET denoising with a 3D conditional diffusion model (the EJNMMI 2025 method).

A map of the package, by layer; each layer imports only from the ones below it
(``make lint`` checks it with the contracts of ``.importlinter``):

Applications, what a run is made of:

* :mod:`.denoise_run`: one denoising run (survey, model, each volume, results, sidecars);
  ``scripts/test.py`` wires its flags and ``load_data_for_worker`` into it;
* :mod:`.denoise_settings`: the run's settings, resolved once (command line, model card, preset);
* :mod:`.script_util`: the paper's flag defaults and factories, under its names;
* :mod:`.model_kinds`: the registry of what denoises (diffusion, regression, GAN, Gaussian);
* :mod:`.denoise`: a volume's patches dealt to the MPI ranks, stitched on rank 0;
  :mod:`.volume_files`: the scripts' input and output flags and result files;
* :mod:`.patch_jobs`: a list of (ensemble member, patch) jobs denoised in one process.

PET domain, :mod:`.pet` (files, simulator, training data, evaluation; numpy outside training).

Runtime: :mod:`.dist_util` (MPI ranks, devices, errors on every rank), :mod:`.sharding`,
:mod:`.checkpoint`, :mod:`.model_card`, :mod:`.storage`, :mod:`.atomic`, :mod:`.output_set`, :mod:`.precision`
(fp32 / bf16 / fp16, one rule for ``--use_fp16``), :mod:`.inference_network`, :mod:`.logger`
(the paper's), and training: :mod:`.train_util`, :mod:`.train_adversary`, :mod:`.ema`,
:mod:`.train_state`, :mod:`.train_log`.

Network and diffusion maths (pure torch and numpy): :mod:`.unet`, :mod:`.nn`,
:mod:`.networks` (the UNet and process from the paper's flags), :mod:`.gaussian_diffusion`,
:mod:`.respace`, :mod:`.samplers` (the registry of reverse-process samplers),
:mod:`.resample` (training timestep samplers, the paper's name), :mod:`.losses`,
:mod:`.regression`, :mod:`.adversarial`, :mod:`.warm_start`.

Foundation: :mod:`.flags` (flags and presets) and :mod:`.errors` (the one exception users see).

Extension points are registries, each one module plus one line to extend:
samplers (:data:`.samplers.SAMPLERS`), model kinds (:data:`.model_kinds.MODEL_KINDS`),
input formats (:data:`.pet.io.FORMATS`) and evaluation metrics (:mod:`.pet.eval.registry`).
"""
