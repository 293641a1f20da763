// Start `archdsl lsp` for .arch files; everything else (diagnostics, hovers,
// definitions, completion, formatting, outline) comes from the server.
const vscode = require("vscode");
const { LanguageClient } = require("vscode-languageclient/node");

let client;

function activate(context) {
  const [command, ...args] = vscode.workspace
    .getConfiguration("archdsl")
    .get("server.command", ["archdsl", "lsp"]);
  client = new LanguageClient(
    "archdsl",
    "archdsl language server",
    { run: { command, args }, debug: { command, args } },
    { documentSelector: [{ scheme: "file", language: "arch" }] }
  );
  context.subscriptions.push(client);
  return client.start();
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
