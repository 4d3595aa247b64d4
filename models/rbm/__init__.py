"""RBM learners and their update rule: dense (Bernoulli and Gaussian visibles), locally connected
(one class per backend), convolutional (tied weights), one-of-K (softmax hidden), the
scikit-learn-style estimator and the parameter updater."""
