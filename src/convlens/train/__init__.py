"""Training face encoders: triplet loss with in-batch mining, or Siamese pairs.

    convlens train triplet DIR -o model.pt [--init pretrained|scratch] [--model NAME] ...

    from convlens.train.trainer import TrainConfig, Trainer
    Trainer(TrainConfig(init="scratch"), train, val, "enc.pt", callback=print).fit()

Modules: .config (TrainConfig and its check), .trainer (the loop), .objective (encoder,
frozen layers, loss, optimizer and schedule), .events (StepEvent/EpochEvent, progress bar),
.logs (CSV and PNG curves), .checkpoint (save and resume), .distributed (torchrun/DDP),
.losses (losses and mining), .data (chips, P x K batches).
"""
