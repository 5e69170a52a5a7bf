// @keyv/test-suite lists sqlite3 as a dependency, but the tests this project
// runs (keyvTestSuite, keyvIteratorTests) never load it. sqlite3 is a native
// module: without a prebuilt binary (fetched from GitHub) it compiles with
// node-gyp, which needs a compiler and Node's headers from nodejs.org, and a
// failed build fails `npm install`. package.json overrides it with this.
throw new Error('sqlite3 is not installed in this project: package.json overrides it with test/support/sqlite3-unused');
