#!/usr/bin/env python3
"""An SQS queue on moto's server (PyPI `moto[server]`, a local
implementation of the AWS APIs), with signature checking on: the server is
started with INITIAL_NO_AUTH_ACTION_COUNT so that after the setup calls
every request must carry a valid AWS Signature Version 4 of a known key.

usage: sqs_queue.py setup ENDPOINT   → prints {"queue_url", "access_key_id", "secret_access_key"}
       sqs_queue.py drain ENDPOINT QUEUE_URL KEY SECRET  → prints every message body, one per line
setup makes an IAM user allowed sqs:*, its access key, and a FIFO queue.
"""
import json
import sys

import boto3

command, endpoint = sys.argv[1:3]
region = "us-east-1"
if command == "setup":
    anonymous = dict(endpoint_url=endpoint, region_name=region, aws_access_key_id="setup", aws_secret_access_key="setup")
    iam = boto3.client("iam", **anonymous)
    iam.create_user(UserName="portcullis")
    key = iam.create_access_key(UserName="portcullis")["AccessKey"]
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sqs:*", "Resource": "*"}]}
    iam.put_user_policy(UserName="portcullis", PolicyName="sqs", PolicyDocument=json.dumps(policy))
    sqs = boto3.client("sqs", **anonymous)
    url = sqs.create_queue(QueueName="portcullis-events.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    print(json.dumps({"queue_url": url, "access_key_id": key["AccessKeyId"], "secret_access_key": key["SecretAccessKey"]}))
elif command == "drain":
    queue_url, key, secret = sys.argv[3:6]
    sqs = boto3.client("sqs", endpoint_url=endpoint, region_name=region, aws_access_key_id=key, aws_secret_access_key=secret)
    while True:
        got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        messages = got.get("Messages", [])
        if not messages:
            break
        for message in messages:
            print(message["Body"])
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
