"""Stage 3 (`dreambooth`) and stage 4's ControlNet backend (`profile`): the thesis's diffusion path.

Modules, from pure to I/O:
  openpose_map  data: OpenPose face/body keypoints as mediapipe indices, colours, limbs
  skeleton      pure: landmarks turned to a yaw → OpenPose keypoints → skeleton image
  tokenizer     SD-1.x CLIP tokenizer built offline from open_clip's bundled BPE table
  single_file   single-file (LDM layout) checkpoints: safe reading, writing our models in it
  components    SD-1.x base model / ControlNet loading (diffusers folder or single file), offline
  dreambooth    DreamBooth trainer (full UNet or LoRA), saving and re-applying its weights
  profiles      ControlNet sampling and the best-of-N scorer
  backends      DiffusersDreambooth and ControlNetProfile, the stage plug-ins
  tiny          tiny random components for tests and smoke runs

diffusers/transformers/peft are optional (``facerecon[diffusion]``) and imported inside functions.
"""
