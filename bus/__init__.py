"""How messages move: one broker interface, a RabbitMQ backend and an embedded one."""
