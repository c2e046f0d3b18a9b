"""Training face encoders: triplet loss with in-batch mining, or Siamese pairs.

    convlens train triplet DIR -o model.pt [--init pretrained|scratch] [--mining semi-hard] ...

See convlens.train.trainer (the loop), .losses (losses and mining), .data (chips, P x K batches).
"""
