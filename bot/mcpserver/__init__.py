"""Threadline as an MCP server: the control plane's operations as MCP tools, over
streamable HTTP at /mcp (bot.mcpserver.http) and over stdio (`threadline mcp`,
bot.mcpserver.stdio)."""
