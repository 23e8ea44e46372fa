"""History rows that replicate between the nodes of a pair, stamped ``(origin, epoch, origin_seq)``."""
