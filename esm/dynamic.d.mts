export * from '../dist/dynamic.js'
