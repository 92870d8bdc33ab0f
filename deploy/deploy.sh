#!/usr/bin/env bash
# One command from a checkout to a running service (deploy/README.md):
#
#   deploy/deploy.sh VpcId=vpc-... SubnetIds=subnet-...,subnet-... [Parameter=value ...]
#
# 1. builds the image (make image) and pushes it to ECR, creating the
#    repository on first use;
# 2. creates or updates the CloudFormation stack deploy/cloudformation.yaml
#    with that image and the parameters given;
# 3. waits until the service is stable and prints its state.
#
# STACK (default ecs-kv-cache) names the stack, its cluster and its service.
# IMAGE defaults to <account>.dkr.ecr.<region>.amazonaws.com/ecs-kv-cache:<commit>:
# a new tag per commit, so that every deploy rolls the tasks onto it. Needs the
# AWS CLI v2 with credentials and a region (AWS_REGION or the profile's).
set -euo pipefail
cd "$(dirname "$0")/.."

STACK=${STACK:-ecs-kv-cache}
region=${AWS_REGION:-$(aws configure get region)}
: "${region:?set AWS_REGION}"
if [ -z "${IMAGE:-}" ]; then
  account=$(aws sts get-caller-identity --query Account --output text)
  tag=$(git rev-parse --short HEAD)
  # Uncommitted changes get a tag of their own, never the commit's.
  [ -z "$(git status --porcelain -- Dockerfile pyproject.toml client node)" ] || tag="$tag-$(date +%s)"
  IMAGE=$account.dkr.ecr.$region.amazonaws.com/ecs-kv-cache:$tag
fi
registry=${IMAGE%%/*}
repository=${IMAGE#*/}
repository=${repository%:*}

echo "== image $IMAGE"
if [[ $registry == *.dkr.ecr.*.amazonaws.com ]]; then
  aws ecr describe-repositories --repository-names "$repository" >/dev/null 2>&1 \
    || aws ecr create-repository --repository-name "$repository" >/dev/null
  aws ecr get-login-password --region "$region" | python3 -m deploy.image login "$registry"
fi
python3 -m deploy.image build --tag "$IMAGE"
python3 -m deploy.image push --tag "$IMAGE"

echo "== stack $STACK"
aws cloudformation deploy --stack-name "$STACK" --template-file deploy/cloudformation.yaml \
  --capabilities CAPABILITY_IAM --no-fail-on-empty-changeset \
  --parameter-overrides Image="$IMAGE" "$@"

output() {
  aws cloudformation describe-stacks --stack-name "$STACK" --output text \
    --query "Stacks[0].Outputs[?OutputKey=='$1'].OutputValue"
}
cluster=$(output ClusterName)
service=$(output ServiceName)

echo "== service $cluster/$service"
aws ecs wait services-stable --cluster "$cluster" --services "$service"
aws ecs describe-services --cluster "$cluster" --services "$service" --output table \
  --query 'services[0].{desired:desiredCount,running:runningCount,rollout:deployments[0].rolloutState,taskDefinition:taskDefinition}'
echo "security group of the nodes: $(output SecurityGroupId)"
