// Mounts GraphiQL on /api. A `?query=` parameter opens the page with that query in the editor.
(function () {
  var params = new URLSearchParams(window.location.search);
  // Subscriptions (`shoppingListChanged`) run over a WebSocket at the same path.
  var socket = (window.location.protocol === 'https:' ? 'wss://' : 'ws://') + window.location.host + '/api';
  var fetcher = GraphiQL.createFetcher({ url: '/api', subscriptionUrl: socket });
  var defaultQuery =
    '# The original API: create, rename, add an item, read back.\n' +
    'mutation Create {\n  createShoppingList(name: "groceries") { id name version }\n}\n\n' +
    'query Read {\n  shoppingList(id: 1) { id name version items { id name quantity } }\n}\n';
  var props = { fetcher: fetcher, defaultQuery: defaultQuery, defaultEditorToolsVisibility: true };
  if (params.has('query')) {
    props.query = params.get('query');
  }
  ReactDOM.createRoot(document.getElementById('graphiql')).render(React.createElement(GraphiQL, props));
})();
