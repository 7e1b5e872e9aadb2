import { defineConfig } from 'vite';

// The pages are compiled into the server binary from ../crates/seedgate/web, under fixed
// names (the server lists them and revalidates them by content hash).
export default defineConfig({
  base: '/console/',
  build: {
    outDir: '../crates/seedgate/web',
    emptyOutDir: true,
    modulePreload: { polyfill: false },
    target: 'es2022',
    rollupOptions: {
      input: { console: 'console.html', docs: 'docs.html' },
      output: {
        entryFileNames: '[name].js',
        chunkFileNames: '[name].js',
        assetFileNames: '[name][extname]',
      },
    },
  },
});
