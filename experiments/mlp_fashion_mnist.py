"""The course's first network on Fashion-MNIST (Chollet, Deep Learning with Python, ch. 2).

Dense(512, relu) → Dense(10, softmax), RMSprop (lr 1e-3), sparse categorical
cross-entropy, batch 128, 5 epochs. The learning rate decays from 1e-3 to 0 on
a cosine over the run: with it the final test accuracy is 0.8811 ± 0.0010 over
seeds 0-4 (trained on train[:90%], docs/results.md). On the earlier protocol
(all 60,000 images) it was 0.883-0.886 over seeds 0-2, and with a constant 1e-3
(the book's setting) the last epoch landed anywhere in 0.868-0.881 (Keras 3
with the same setting: 0.872).

    jdl train mlp_fashion_mnist
    jdl train mlp_fashion_mnist --config.data.name=mnist   # when MNIST's files are present
"""

from jdl.config import base_config


def get_config():
  config = base_config()
  config.name = "mlp_fashion_mnist"
  config.data.name = "fashion_mnist"
  config.data.batch_size = 128
  config.model.name = "mlp"
  config.model.options.hidden = (512,)
  config.loss = "sparse_categorical_crossentropy"
  config.optimizer.name = "rmsprop"
  config.optimizer.learning_rate = 1e-3
  config.optimizer.schedule.name = "cosine"
  config.epochs = 5
  return config
