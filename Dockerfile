# The image Vertex AI Pipelines runs every component in, the training job's
# workers run (--vertex_training), and Dataflow's workers run when the data stage
# is launched from Vertex (--sdk_container_image). Build and push it, then pass
# it as `--vertex_image`:
#   docker build -t us-docker.pkg.dev/PROJECT/REPO/retinanet-tfx:latest .
#   docker push us-docker.pkg.dev/PROJECT/REPO/retinanet-tfx:latest
FROM gcr.io/tfx-oss-public/tfx:1.16.0

WORKDIR /pipeline
COPY requirements/requirements.lock requirements/requirements.lock
# The same pinned, hashed set as local runs (dill included: tfx_bsl and
# tensorflow_transform import it and apache-beam no longer installs it).
RUN python -m pip install --no-cache-dir --no-deps --require-hashes -r requirements/requirements.lock
COPY . .
ENV PYTHONPATH=/pipeline TF_USE_LEGACY_KERAS=1
# Dataflow starts its workers with Beam's boot binary of the SDK's own version
# (Beam's custom-container recipe); Vertex steps and training workers set their
# command explicitly, so this entrypoint is Dataflow's alone.
COPY --from=apache/beam_python3.10_sdk:2.74.0 /opt/apache/beam /opt/apache/beam
ENTRYPOINT ["/opt/apache/beam/boot"]
