// SPDX-License-Identifier: MIT
//
// An A2A agent built with the official A2A JavaScript SDK (@a2a-js/sdk, a
// v1.0 server with its v0.3 compatibility layer on), for orch's interop test.
// Listens on 127.0.0.1 at a free port and prints "PORT <n>" once ready.
//
//   "ask: ..."   → the task pauses in input-required with a question;
//   anything else → completes with "sdk: <text> [context <id>, task <id>]".
//
// Usage: node a2a_sdk_server.mjs   (from a directory where @a2a-js/sdk and
// express are installed, or with NODE_PATH pointing at their node_modules)
import express from 'express';
import { Role, TaskState } from '@a2a-js/sdk';
import { AgentEvent, DefaultRequestHandler, InMemoryTaskStore } from '@a2a-js/sdk/server';
import { agentCardHandler, jsonRpcHandler, UserBuilder } from '@a2a-js/sdk/server/express';

function textOf(parts) {
  return (parts || [])
    .map((p) => (p.content && p.content.$case === 'text' ? p.content.value : ''))
    .join('');
}

function textPart(text) {
  return { content: { $case: 'text', value: text }, metadata: undefined, filename: '', mediaType: 'text/plain' };
}

function agentMessage(text, taskId, contextId) {
  return {
    messageId: `m-${Date.now()}-${Math.random().toString(16).slice(2)}`,
    contextId,
    taskId,
    role: Role.ROLE_AGENT,
    parts: [textPart(text)],
    metadata: undefined,
    extensions: [],
    referenceTaskIds: [],
  };
}

class EchoExecutor {
  async execute(ctx, bus) {
    const text = textOf(ctx.userMessage.parts);
    const { taskId, contextId } = ctx;
    if (!ctx.task) {
      bus.publish(AgentEvent.task({
        id: taskId,
        contextId,
        status: { state: TaskState.TASK_STATE_SUBMITTED, message: undefined, timestamp: new Date().toISOString() },
        artifacts: [],
        history: [ctx.userMessage],
        metadata: undefined,
      }));
    }
    if (text.startsWith('ask:')) {
      bus.publish(AgentEvent.statusUpdate({
        taskId,
        contextId,
        status: {
          state: TaskState.TASK_STATE_INPUT_REQUIRED,
          message: agentMessage('which one?', taskId, contextId),
          timestamp: new Date().toISOString(),
        },
        metadata: undefined,
      }));
      bus.finished();
      return;
    }
    const reply = `sdk: ${text} [context ${contextId}, task ${taskId}, continued ${ctx.task ? 'yes' : 'no'}]`;
    bus.publish(AgentEvent.artifactUpdate({
      taskId,
      contextId,
      artifact: { artifactId: `artifact-${taskId}`, name: 'reply', description: '', parts: [textPart(reply)],
                  metadata: undefined, extensions: [] },
      append: false,
      lastChunk: true,
      metadata: undefined,
    }));
    bus.publish(AgentEvent.statusUpdate({
      taskId,
      contextId,
      status: { state: TaskState.TASK_STATE_COMPLETED, message: undefined, timestamp: new Date().toISOString() },
      metadata: undefined,
    }));
    bus.finished();
  }

  async cancelTask() {}
}

const app = express();
const server = app.listen(0, '127.0.0.1', () => {
  const port = server.address().port;
  const url = `http://127.0.0.1:${port}/a2a`;
  const card = {
    name: 'orch interop echo',
    description: 'Echoes text back; asks for input on "ask:"',
    supportedInterfaces: [
      { url, protocolBinding: 'JSONRPC', tenant: '', protocolVersion: '1.0' },
      { url, protocolBinding: 'JSONRPC', tenant: '', protocolVersion: '0.3' },
    ],
    provider: undefined,
    version: '1.0.0',
    capabilities: { streaming: false, pushNotifications: false, extensions: [], extendedAgentCard: false },
    securitySchemes: {},
    securityRequirements: [],
    defaultInputModes: ['text/plain'],
    defaultOutputModes: ['text/plain'],
    skills: [],
    signatures: [],
  };
  const handler = new DefaultRequestHandler(card, new InMemoryTaskStore(), new EchoExecutor());
  app.use('/.well-known/agent-card.json',
          agentCardHandler({ agentCardProvider: handler, legacyCompat: { enabled: true } }));
  app.use('/a2a', jsonRpcHandler({
    requestHandler: handler,
    userBuilder: UserBuilder.noAuthentication,
    legacyCompat: { enabled: true },
  }));
  process.stdout.write(`PORT ${port}\n`);
});

process.stdin.on('end', () => process.exit(0));  // the test closes our stdin to stop us
process.stdin.resume();
