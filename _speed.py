import time, numpy as np, jax, jax.numpy as jnp, optax
from vision_jax import fewshot as fs
from vision_jax.models import Conv4
from vision_jax.data.fewshot_embedded import embedded_fewshot
import sys
d = embedded_fewshot(per_class=30)
g = fs.class_splits(d.labels, d.splits)
for ways, shots, q, width, crn in [(5,5,15,32,None),(10,5,10,32,None),(10,5,10,64,None),(10,5,10,32,fs.CRNWeights())]:
  s = fs.EpisodeSampler(g["base"], num_ways=ways, num_shots=shots, num_queries=q, split="base")
  data = fs.EpisodeBatches(d.images, s, class_order=d.splits["base"])
  task = fs.fewshot_task(Conv4(width=width), num_ways=ways, crn=crn, num_base_classes=72)
  b = data[0]
  p, ms, ex = task.init(jax.random.PRNGKey(0), b)
  tx = optax.adam(1e-3); os_ = tx.init(p)
  @jax.jit
  def step(p, ms, ex, os_, b):
    (l, aux), gr = jax.value_and_grad(task.loss_fn, has_aux=True)(p, ms, ex, b, None, 0)
    u, os_ = tx.update(gr, os_, p)
    return optax.apply_updates(p, u), aux["model_state"], aux["extra"], os_, l
  out = step(p, ms, ex, os_, b); jax.block_until_ready(out)
  t = time.time(); n = 30
  for i in range(n):
    p, ms, ex, os_, l = step(p, ms, ex, os_, data[i])
  jax.block_until_ready(l)
  print(ways, shots, q, width, crn is not None, f"{n/(time.time()-t):.1f} ep/s")
